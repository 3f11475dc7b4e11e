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
// (pubsub.Router): each node's pub/sub connection subscribes to the
// channels with subscribers on that node, never one subscription per
// client, so Redis sends a node only what its clients want. A publish runs
// in a Lua script that increments the channel's offset, appends to its
// history list (trimmed to the history size) and PUBLISHes, atomically, so
// offsets are gap-free and in order on every node; concurrent publishes
// share round trips and script calls (publish.go). Keys:
//
//	<prefix>{<channel>}:meta   hash: epoch, offset, seen (expires after the history TTL without use)
//	<prefix>{<channel>}:log    list of the last messages, "<offset> <ms> <data>", oldest first
//	<prefix>msg:<channel>      the pub/sub topic
//
// and the global keys of the channel cap and the history byte budget
// (budgetLua), which the scripts touch beside a channel's own: every key
// must live on one Redis (a primary, with replicas or Sentinel). On a
// Redis Cluster (ClusterScheme) <prefix> is the channel's slot group's,
// <prefix>{<tag>}, and the topic a sharded one (cluster.go).
//
// A plain "PUBLISH <prefix>msg:<channel> <JSON>" from any Redis client
// reaches the channel's subscribers on every node too, without an offset
// or history (SPUBLISH to the group's topic in a cluster). A Broker serves
// one Node.
type Broker struct {
	rdb     goredis.UniversalClient
	cluster *goredis.ClusterClient // the same client, on a cluster; nil on one Redis
	spaces  []*space               // one, or a cluster's slot groups
	size    int
	ttl     time.Duration
	log     *slog.Logger
	// The contract of pubsub.BrokerOptions, kept in Redis for every node
	// (per slot group in a cluster).
	maxBytes    int64
	maxChannels int

	pub publisher
}

// space is one key space: the whole Redis, or one slot group of a
// cluster. Its channels share a pub/sub connection.
type space struct {
	prefix string // of its keys and topics
	ready  atomic.Bool
	routes routes
}

// internalMark starts the pub/sub payload of a message published through
// Fanout: "\x00fo1 <epoch> <offset> <data>". JSON never starts with NUL.
const internalMark = "\x00fo1 "

// New returns a broker for the Redis at url
// (redis://[user:password@]host:port/db), or for the Redis Cluster at
// redis-cluster://[user:password@]host:port,host:port,... It does not
// connect yet: Start does, retrying with backoff while Redis is down.
func New(url string, o pubsub.BrokerOptions) (*Broker, error) {
	o = o.WithDefaults()
	b := &Broker{
		size:        o.HistorySize,
		ttl:         o.HistoryTTL,
		maxBytes:    o.HistoryMaxBytes,
		maxChannels: o.MaxChannels,
		log:         o.Logger,
	}
	prefixes := []string{o.Prefix}
	if rest, ok := strings.CutPrefix(url, ClusterScheme); ok {
		c, ps, err := newCluster(rest, o.Prefix)
		if err != nil {
			return nil, err
		}
		b.rdb, b.cluster, prefixes = c, c, ps
		b.maxBytes, b.maxChannels = shareOf(b.maxBytes), int(shareOf(int64(b.maxChannels)))
	} else {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis: url: %w", redact.Error(err))
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = failFast()
		opt.MaxRetries = 1
		b.rdb = goredis.NewClient(opt)
	}
	for _, p := range prefixes {
		b.spaces = append(b.spaces, &space{prefix: p, routes: newRoutes()})
	}
	return b, nil
}

// failFast are the dial, read and write timeouts: workers call Publish and
// History, so they fail fast instead of waiting on a Redis that is down.
func failFast() (dial, read, write time.Duration) { return time.Second, time.Second, time.Second }

// Close closes the Redis connections.
func (b *Broker) Close() error { return b.rdb.Close() }

// HistoryLimits reports the history each channel keeps.
func (b *Broker) HistoryLimits() (size int, ttl time.Duration) { return b.size, b.ttl }

// Ready reports whether a pub/sub connection holds its routes: on a
// cluster, while a master is down, the channels of the others still work
// (and those of its slot groups fail on their own).
func (b *Broker) Ready() bool {
	for _, s := range b.spaces {
		if s.ready.Load() {
			return true
		}
	}
	return false
}

// allReady reports whether every pub/sub connection holds its routes.
func (b *Broker) allReady() bool {
	for _, s := range b.spaces {
		if !s.ready.Load() {
			return false
		}
	}
	return true
}

// space is channel's key space.
func (b *Broker) space(channel string) *space {
	if len(b.spaces) == 1 {
		return b.spaces[0]
	}
	return b.spaces[group(channel)]
}

func (b *Broker) keys(channel string) []string {
	p := b.space(channel).prefix
	return []string{p + "{" + channel + "}:meta", p + "{" + channel + "}:log"}
}

func (b *Broker) topic(channel string) string { return b.space(channel).topicPrefix() + channel }

// topicPrefix starts the pub/sub topic of each of s's channels; the
// publish script is given it too.
func (s *space) topicPrefix() string { return s.prefix + "msg:" }

// probe is a cluster group's topic that nothing publishes to: subscribed
// first, it ties the group's connection to the group's master, and its
// SUNSUBSCRIBE from Redis says the group's slot moved.
func (s *space) probe() string { return s.prefix + "probe" }

// Start subscribes and delivers on goroutines of its own (one per key
// space) until ctx is done, resubscribing with backoff after any error.
func (b *Broker) Start(ctx context.Context, deliver func(pubsub.Message), resync func()) <-chan struct{} {
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range b.spaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.run(ctx, s, deliver, resync)
		}()
	}
	go func() {
		wg.Wait()
		close(stopped)
	}()
	return stopped
}

func (b *Broker) run(ctx context.Context, s *space, deliver func(pubsub.Message), resync func()) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := b.session(ctx, s, deliver, resync)
		if s.ready.Swap(false) {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("redis broker disconnected; retrying", "keys", s.prefix, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if b.cluster != nil { // the group's slot may have moved, or its master failed over
			b.cluster.ReloadState(ctx)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session is one pub/sub connection of s: it subscribes to the routes
// (flushRoutes), confirms them (confirmRoutes) and delivers what arrives
// until the connection or ctx ends.
func (b *Broker) session(ctx context.Context, s *space, deliver func(pubsub.Message), resync func()) error {
	ctx, cancel := context.WithCancel(ctx)
	var ps *goredis.PubSub
	if b.cluster != nil {
		// Every connection of ps, whoever makes it first, goes to the master
		// of the probe's slot (go-redis picks it by the first channel held)
		// and holds the probe.
		ps = b.cluster.SSubscribe(ctx, s.probe())
	} else {
		ps = b.rdb.Subscribe(ctx) // connects on first use
	}
	unblock := context.AfterFunc(ctx, func() { ps.Close() }) // Receive does not watch ctx
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.flushRoutes(ctx, s, ps) }()
	go func() { defer wg.Done(); confirmRoutes(ctx, &s.routes) }()
	err := b.receive(ctx, s, ps, deliver, resync)
	cancel()
	wg.Wait()
	unblock()
	ps.Close()
	s.routes.held.Store(0)
	return err
}

func (b *Broker) receive(ctx context.Context, s *space, ps *goredis.PubSub, deliver func(pubsub.Message), resync func()) error {
	topicPrefix := s.topicPrefix()
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *goredis.Pong: // flushRoutes's first: every route is held
			if !s.ready.Swap(true) {
				b.log.Info("redis broker connected", "keys", s.prefix, "channels", s.routes.held.Load())
				if b.allReady() { // resync reads every channel's history: once the last space is back
					resync() // anything published while we were away
				}
			}
		case *goredis.Subscription:
			if m.Kind == "sunsubscribe" && m.Channel == s.probe() {
				return fmt.Errorf("redis: slot of %s moved", s.prefix)
			}
			if channel, ok := strings.CutPrefix(m.Channel, topicPrefix); ok && (m.Kind == "subscribe" || m.Kind == "ssubscribe") {
				s.routes.subscribed(channel)
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
		Subscriptions:     b.held(),
		PublishRoundTrips: b.pub.roundTrips.Load(),
		PublishedMessages: b.pub.messages.Load(),
	}
}

// held is the number of channels subscribed on the live connections.
func (b *Broker) held() int {
	n := 0
	for _, s := range b.spaces {
		n += int(s.routes.held.Load())
	}
	return n
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
