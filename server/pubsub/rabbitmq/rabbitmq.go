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
// every node the same state back. Retention (max-age) must keep at least
// the history TTL, which the defaults do.
package rabbitmq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
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

// touchQueue bounds the touches History leaves for the session to send.
const touchQueue = 256

// socketBufferBytes sizes the stream client's socket buffers. The
// library's 8 KiB default caps the TCP window: a 60 KB proposal took
// 0.6 s to read back, and a few clients publishing such messages held
// every other publish of the cluster past the broker timeout.
const socketBufferBytes = 1 << 20

// DefaultStream names the stream when the URL does not.
const DefaultStream = "fanout"

// DefaultMaxLengthBytes bounds the stream on the broker's disk when the URL
// does not.
const DefaultMaxLengthBytes = 1 << 30

// Broker is a pubsub.Broker on a RabbitMQ stream. Safe for concurrent use.
type Broker struct {
	ready   atomic.Bool
	seq     atomic.Uint64
	dropped atomic.Bool // a delivery found out full: resync once it drains

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
	// touches takes the touches History does not wait for to the session,
	// which sends them.
	touches chan []byte

	// handling is held while a stream message is handled, so nothing is
	// queued for delivery after its session ended.
	handling sync.Mutex

	mu      sync.Mutex
	st      *state
	prod    *stream.Producer // nil while disconnected
	waiters map[uint64]chan result
}

// result is what a node learns when it reads its own proposal back.
type result struct {
	accepted bool
	pos      pubsub.Position
	err      error
}

// session is one connection's life; closed is guarded by Broker.handling.
type session struct {
	hello  uint64
	live   bool // the hello was read: deliver what follows
	closed bool
}

// New returns a broker for the stream at rawURL,
// rabbitmq-stream://user:password@host:5552/vhost, whose query may set
// stream (the name, DefaultStream), max-age (the stream's retention; the
// history TTL plus a minute by default) and max-length-bytes
// (DefaultMaxLengthBytes). The history a node keeps in memory, data plus
// 96 bytes per message, is o.HistoryMaxBytes, like every broker's. It does
// not connect yet: Start does, retrying with backoff while RabbitMQ is down.
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
		touches:  make(chan []byte, touchQueue),
	}
	maxAge, err1 := duration(q.Get("max-age"), b.ttl+2*clockSkew)
	maxLen, err2 := bytesParam(q.Get("max-length-bytes"), DefaultMaxLengthBytes)
	var err3 error
	if q.Has("history-max-bytes") {
		err3 = errors.New("history-max-bytes is no longer a URL parameter: set -history-max-bytes (BrokerOptions.HistoryMaxBytes)")
	}
	if err = errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("rabbitmq: url: %w", err)
	}
	if maxAge < b.ttl+clockSkew {
		return nil, fmt.Errorf("rabbitmq: url: max-age %v is shorter than the history TTL %v plus %v", maxAge, b.ttl, clockSkew)
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

func duration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("max-age %q: want a positive duration such as 10m", s)
	}
	return d, nil
}

func bytesParam(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive number of bytes", s)
	}
	return n, nil
}

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
