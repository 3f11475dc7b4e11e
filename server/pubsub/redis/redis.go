package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/internal/redact"
	"github.com/fanout-ws/fanout/server/pubsub"
	goredis "github.com/redis/go-redis/v9"
)

// Broker is a pubsub.Broker on Redis pub/sub that routes by interest
// (pubsub.Router): each node's one pub/sub connection subscribes to the
// channels with subscribers on that node, never one subscription per
// client, so Redis sends a node only what its clients want. A publish runs
// one Lua script that increments the channel's offset, appends to its
// history stream (MAXLEN history size) and PUBLISHes, atomically, so
// offsets are gap-free and in order on every node; concurrent publishes
// share round trips (publish.go). Keys:
//
//	<prefix>{<channel>}:meta   hash: epoch, offset (expires after the history TTL without use)
//	<prefix>{<channel>}:hist   stream of the last messages, IDs <offset>-1
//	<prefix>msg:<channel>      the pub/sub topic
//
// and the global keys of the channel cap and the history byte budget
// (budgetLua), which the scripts touch beside a channel's own: every key
// must live on one Redis (a primary, with replicas or Sentinel; not a
// Cluster).
//
// A plain "PUBLISH <prefix>msg:<channel> <JSON>" from any Redis client
// reaches the channel's subscribers on every node too, without an offset
// or history. A Broker serves one Node.
type Broker struct {
	rdb    *goredis.Client
	prefix string
	size   int
	ttl    time.Duration
	log    *slog.Logger
	// The contract of pubsub.BrokerOptions, kept in Redis for every node.
	maxBytes    int64
	maxChannels int
	ready       atomic.Bool

	routes routes
	pub    publisher
}

// internalMark starts the pub/sub payload of a message published through
// Fanout: "\x00fo1 <epoch> <offset> <data>". JSON never starts with NUL.
const internalMark = "\x00fo1 "

// New returns a broker for the Redis at url
// (redis://[user:password@]host:port/db). It does not connect yet: Start
// does, retrying with backoff while Redis is down.
func New(url string, o pubsub.BrokerOptions) (*Broker, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: url: %w", redact.Error(err))
	}
	// Workers call Publish and History: fail fast instead of waiting on a
	// Redis that is down.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	opt.MaxRetries = 1
	o = o.WithDefaults()
	b := &Broker{
		rdb:         goredis.NewClient(opt),
		prefix:      o.Prefix,
		size:        o.HistorySize,
		ttl:         o.HistoryTTL,
		maxBytes:    o.HistoryMaxBytes,
		maxChannels: o.MaxChannels,
		log:         o.Logger,
		routes:      newRoutes(),
	}
	return b, nil
}

// Close closes the Redis connections.
func (b *Broker) Close() error { return b.rdb.Close() }

// HistoryLimits reports the history each channel keeps.
func (b *Broker) HistoryLimits() (size int, ttl time.Duration) { return b.size, b.ttl }

// Ready reports whether the pub/sub connection holds every route.
func (b *Broker) Ready() bool { return b.ready.Load() }

func (b *Broker) keys(channel string) []string {
	return []string{b.prefix + "{" + channel + "}:meta", b.prefix + "{" + channel + "}:hist"}
}

func (b *Broker) topic(channel string) string { return b.prefix + "msg:" + channel }

// Start subscribes and delivers on a goroutine of its own until ctx is
// done, resubscribing with backoff after any error.
func (b *Broker) Start(ctx context.Context, deliver func(pubsub.Message), resync func()) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.run(ctx, deliver, resync)
	}()
	return stopped
}

func (b *Broker) run(ctx context.Context, deliver func(pubsub.Message), resync func()) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := b.session(ctx, deliver, resync)
		if b.ready.Swap(false) {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("redis broker disconnected; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session is one pub/sub connection: it subscribes to the routes
// (flushRoutes), confirms them (confirmRoutes) and delivers what arrives
// until the connection or ctx ends.
func (b *Broker) session(ctx context.Context, deliver func(pubsub.Message), resync func()) error {
	ctx, cancel := context.WithCancel(ctx)
	ps := b.rdb.Subscribe(ctx)                               // connects on first use
	unblock := context.AfterFunc(ctx, func() { ps.Close() }) // Receive does not watch ctx
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.flushRoutes(ctx, ps) }()
	go func() { defer wg.Done(); b.confirmRoutes(ctx) }()
	err := b.receive(ctx, ps, deliver, resync)
	cancel()
	wg.Wait()
	unblock()
	ps.Close()
	b.routes.held.Store(0)
	return err
}

func (b *Broker) receive(ctx context.Context, ps *goredis.PubSub, deliver func(pubsub.Message), resync func()) error {
	topicPrefix := b.topic("")
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *goredis.Pong: // flushRoutes's first: every route is held
			if !b.ready.Swap(true) {
				b.log.Info("redis broker connected", "channels", b.routes.held.Load())
				resync() // anything published while we were away
			}
		case *goredis.Subscription:
			if channel, ok := strings.CutPrefix(m.Channel, topicPrefix); ok && m.Kind == "subscribe" {
				b.routes.subscribed(channel)
			}
		case *goredis.Message:
			channel, ok := strings.CutPrefix(m.Channel, topicPrefix)
			if !ok {
				continue
			}
			if msg, ok := parsePayload(channel, m.Payload); ok {
				deliver(msg)
			} else {
				b.log.Warn("redis broker: dropped a message that is neither Fanout's nor JSON", "channel", channel)
			}
		}
	}
}

// BrokerStats reports the subscriptions held and the publish round trips.
func (b *Broker) BrokerStats() pubsub.BrokerStats {
	return pubsub.BrokerStats{
		Subscriptions:     int(b.routes.held.Load()),
		PublishRoundTrips: b.pub.roundTrips.Load(),
		PublishedMessages: b.pub.messages.Load(),
	}
}

// parsePayload reads a pub/sub payload: Fanout's own, or plain JSON
// published from outside (offset 0).
func parsePayload(channel, payload string) (pubsub.Message, bool) {
	rest, ok := strings.CutPrefix(payload, internalMark)
	if !ok {
		if pubsub.CheckChannelName(channel) != nil || !json.Valid([]byte(payload)) {
			return pubsub.Message{}, false
		}
		return pubsub.Message{Channel: channel, Data: []byte(payload)}, true
	}
	epoch, rest, ok1 := strings.Cut(rest, " ")
	off, data, ok2 := strings.Cut(rest, " ")
	offset, err := strconv.ParseUint(off, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return pubsub.Message{}, false
	}
	return pubsub.Message{Channel: channel, Position: pubsub.Position{Offset: offset, Epoch: epoch}, Data: []byte(data)}, true
}
