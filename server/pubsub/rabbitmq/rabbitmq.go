// Package rabbitmq is a pubsub.Broker on one RabbitMQ stream (the
// rabbitmq_stream plugin, RabbitMQ 3.9+).
//
// RabbitMQ has no atomic counter, so offsets come from the stream's total
// order instead. Every node holds one consumer on the stream and one
// producer. A publish is a proposal, "channel c, epoch e, offset n": every
// node reads the proposals in the same order and applies the same rule
// (state.apply), accepting a proposal only when n follows the channel's last
// offset in e. The publishing node waits until its own consumer has read its
// proposal back; if another node's proposal won the offset, it proposes
// again. So offsets are gap-free and the same on every node, each message
// crosses the broker once per node, and history is what each node kept from
// the stream (bounded in entries per channel and in bytes per node).
//
// On every (re)connection a node starts its state afresh from the stream,
// reading the last history TTL of it before it reports Ready; a stream that
// lost its data therefore starts new epochs, and one that kept it gives
// every node the same state back. Retention (BrokerOptions.Retention, the
// stream's max-age) must keep at least the history TTL, which the defaults
// do. When retention by size cut that window, the node takes every
// channel's state from a running node first (snapshot.go), so that it never
// starts an epoch of its own for a channel the others keep.
package rabbitmq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/internal/redact"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/logs"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"
)

// clockSkew is how far apart the nodes' and the broker's clocks may be: a
// node reads this much more than the TTL of the stream when it connects,
// and forgets a channel this much after it expired.
const clockSkew = 30 * time.Second

// deliveryQueue bounds the messages read from the stream and not yet
// delivered to this node's subscribers.
const deliveryQueue = 4096

// laterQueue bounds the messages left for the session to send (later).
const laterQueue = 256

// socketBufferBytes sizes the stream client's socket buffers. The
// library's 8 KiB default caps the TCP window: a 60 KB proposal took
// 0.6 s to read back, and a few clients publishing such messages held
// every other publish of the cluster past the broker timeout.
const socketBufferBytes = 1 << 20

// DefaultStream names the stream when the URL does not.
const DefaultStream = "fanout"

// Broker is a pubsub.Broker on a RabbitMQ stream. Safe for concurrent use.
type Broker struct {
	ready   atomic.Bool
	seq     atomic.Uint64
	dropped atomic.Bool // a delivery found out full: resync once it drains
	// publishes counts the publish proposals sent (one stream round trip
	// each: written, then read back), for BrokerStats.
	publishes atomic.Uint64

	uri       string
	name      string // the stream's
	retention *stream.StreamOptions
	ttl       time.Duration
	size      int
	maxBytes  int64
	max       int
	node      string
	log       *slog.Logger
	// out takes accepted messages from the consumer to the goroutine that
	// delivers them. The consumer never waits for it: a delivery may wait
	// for a channel lock whose holder waits in History for the consumer to
	// read a touch. What does not fit is caught up from history (resync).
	out chan pubsub.Message
	// later takes to the session the messages it sends without anyone
	// waiting to read them back: wants and snapshots.
	later chan []byte
	// touchDue wakes the session to send the touches of toTouch.
	touchDue chan struct{}

	// handling is held while a stream message is handled, so nothing is
	// queued for delivery after its session ended.
	handling sync.Mutex

	mu      sync.Mutex
	st      *state
	prod    *stream.Producer // nil while disconnected
	waiters map[uint64]chan result
	toTouch map[string]struct{} // channels History touches without waiting
}

// result is what a node learns when it reads its own proposal back.
type result struct {
	accepted bool
	pos      pubsub.Position
	err      error
}

// session is one connection's life, guarded by Broker.handling.
type session struct {
	hello     uint64
	helloRead bool
	live      bool // the hello was read and the state settled: deliver what follows
	closed    bool
	from      int64         // ms: the window this session reads from (read-only)
	settleBy  chan struct{} // own want read: the session starts its timer (read-only)
	settling
}

// New returns a broker for the stream at rawURL,
// rabbitmq-stream://user:password@host:5552/vhost[?stream=name] (the
// name DefaultStream by default): the URL is the address, o the rest. The
// stream's retention is o.Retention and o.RetentionBytes; the history a
// node keeps in memory, data plus 96 bytes per message, is
// o.HistoryMaxBytes, like every broker's. It does not connect yet: Start
// does, retrying with backoff while RabbitMQ is down.
func New(rawURL string, o pubsub.BrokerOptions) (*Broker, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "rabbitmq-stream" && u.Scheme != "rabbitmq-stream+tls" {
		return nil, fmt.Errorf("rabbitmq: url %q: want rabbitmq-stream://user:password@host:port/vhost", redact.URL(rawURL))
	}
	q := u.Query()
	u.RawQuery = ""
	o = o.WithDefaults()
	b := &Broker{
		uri:      u.String(),
		name:     cmp.Or(q.Get("stream"), DefaultStream),
		ttl:      o.HistoryTTL,
		size:     o.HistorySize,
		max:      o.MaxChannels,
		maxBytes: o.HistoryMaxBytes,
		node:     pubsub.NewEpoch(),
		log:      o.Logger,
		waiters:  make(map[uint64]chan result),
		later:    make(chan []byte, laterQueue),
		touchDue: make(chan struct{}, 1),
		toTouch:  make(map[string]struct{}),
	}
	var errs []error
	for _, p := range [][2]string{{"history-max-bytes", "-history-max-bytes (BrokerOptions.HistoryMaxBytes)"},
		{"max-age", "-broker-retention (BrokerOptions.Retention)"}, {"max-length-bytes", "-broker-retention-bytes (BrokerOptions.RetentionBytes)"}} {
		if q.Has(p[0]) {
			errs = append(errs, fmt.Errorf("url: %s is no longer a URL parameter: set %s", p[0], p[1]))
		}
	}
	maxAge, maxLen := o.Retention, o.RetentionBytes
	if maxAge < b.ttl+clockSkew {
		errs = append(errs, fmt.Errorf("retention %v is shorter than the history TTL %v plus %v", maxAge, b.ttl, clockSkew))
	}
	if maxLen <= 0 {
		errs = append(errs, fmt.Errorf("retention bytes (%d) must be positive", maxLen))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	// Retention drops whole segments: keep them small against the bound.
	b.retention = stream.NewStreamOptions().SetMaxAge(maxAge).
		SetMaxLengthBytes(stream.ByteCapacity{}.B(maxLen)).
		SetMaxSegmentSizeBytes(stream.ByteCapacity{}.B(max(maxLen/16, 1<<20)))
	b.st = newState(b.ttl, b.size, b.maxBytes)
	clientLog.Store(b.log)
	return b, nil
}

// clientLog receives, at debug level, the logs of the stream client, which
// keeps one logger per process: the latest Broker's logger. The broker logs
// what matters (disconnections, retries) itself.
var clientLog atomic.Pointer[slog.Logger]

// init installs the forwarder before any client goroutine can read the
// library's unguarded logger variable.
func init() { logs.SetLogger(clientLogger{}) }

type clientLogger struct{}

func (clientLogger) Debug(msg string, v ...any) {
	if l := clientLog.Load(); l != nil {
		l.Debug(fmt.Sprintf(msg, v...), "component", "rabbitmq-stream-client")
	}
}
func (l clientLogger) Info(msg string, v ...any)  { l.Debug(msg, v...) }
func (l clientLogger) Warn(msg string, v ...any)  { l.Debug(msg, v...) }
func (l clientLogger) Error(msg string, v ...any) { l.Debug(msg, v...) }

// Ready reports whether this node has read the stream up to its latest
// connection and is delivering.
func (b *Broker) Ready() bool { return b.ready.Load() }

// Start connects and delivers on a goroutine of its own until ctx is done,
// reconnecting with backoff after any error.
func (b *Broker) Start(ctx context.Context, deliver func(pubsub.Message), resync func()) <-chan struct{} {
	b.out = make(chan pubsub.Message, deliveryQueue)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var wg sync.WaitGroup // resyncs and deliveries
		defer wg.Wait()
		wg.Go(func() {
			for m := range b.out {
				deliver(m)
				if len(b.out) == 0 && b.dropped.Swap(false) {
					resync()
				}
			}
		})
		defer close(b.out) // after the last session ended
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			err := b.session(ctx, func() { wg.Go(resync) })
			if b.ready.Swap(false) {
				backoff = 50 * time.Millisecond
			}
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("rabbitmq broker disconnected; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
	return stopped
}
