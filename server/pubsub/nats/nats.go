// Package nats is a pubsub.Broker on NATS JetStream, in a package of its
// own so that only programs that use it link the NATS client.
//
// Each channel is a subject. A publish appends to the stream <p>_msgs on
// <p>.ch.<key> (<p> from BrokerOptions.Prefix, <key> the channel name in
// base64url), with the channel's epoch and next offset in headers and
// Nats-Expected-Last-Subject-Sequence set to the subject's last sequence:
// of concurrent publishers one wins each offset, the others read the new
// last message and try again, so offsets are gap-free and in one order
// (publish.go).
// The stream keeps the history (MaxMsgsPerSubject history size, MaxAge
// history TTL, MaxBytes the history budget, oldest first) and republishes
// each stored message, in stream order, to <p>.msg.<key>, which a node
// subscribes to for exactly the channels it serves (pubsub.Router). The
// channel bounds live in three more streams of one message per subject,
// expiring after the history TTL: <p>_chans (each channel and its epoch),
// <p>_unread (made by a publish, not read since) and <p>_idle (released
// by a node), counted through stream info.
package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/internal/redact"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a message published through Fanout.
const (
	hdrEpoch  = "Fanout-Epoch"
	hdrOffset = "Fanout-Offset"
)

// Broker is a pubsub.Broker on NATS JetStream; a Broker serves one Node.
type Broker struct {
	url         string
	tok         string // subject and stream prefix
	size        int
	ttl         time.Duration
	maxBytes    int64
	maxChannels int
	log         *slog.Logger

	nc    *nats.Conn
	js    jetstream.JetStream
	ready atomic.Bool

	streams  atomic.Pointer[streams]
	createMu sync.Mutex // one new channel at a time from this node

	routeMu sync.Mutex
	subs    map[string]*nats.Subscription
	pending map[string]*route // routes whose live is not called yet
	kick    chan struct{}

	pubMu    sync.Mutex
	pubs     map[string]*pubState // publish.go
	pubSwept time.Time

	publishes atomic.Uint64
}

type streams struct{ msgs, chans, unread, idle jetstream.Stream }

// New returns a broker for the NATS server at url (nats://host:4222). It
// does not connect yet: Start does, and keeps reconnecting.
func New(url string, o pubsub.BrokerOptions) (*Broker, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("nats: url: %w", redact.Error(err))
	}
	if u.Scheme != "nats" || u.Hostname() == "" {
		return nil, fmt.Errorf("nats: url %s: want nats://[user:password@]host:port", u.Redacted())
	}
	o = o.WithDefaults()
	tok := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return -1
	}, o.Prefix)
	if tok == "" {
		return nil, fmt.Errorf("nats: prefix %q has no letter or digit", o.Prefix)
	}
	return &Broker{
		url: url, tok: tok, size: o.HistorySize, ttl: o.HistoryTTL, maxBytes: o.HistoryMaxBytes, maxChannels: o.MaxChannels,
		log: o.Logger, subs: make(map[string]*nats.Subscription), pending: make(map[string]*route), pubs: make(map[string]*pubState), kick: make(chan struct{}, 1),
	}, nil
}

// HistoryLimits reports the history each channel keeps.
func (b *Broker) HistoryLimits() (size int, ttl time.Duration) { return b.size, b.ttl }

// Ready reports whether the broker is connected and its streams exist.
func (b *Broker) Ready() bool { return b.ready.Load() }

// BrokerStats reports the subscriptions held and the publish requests
// (one JetStream round trip each, one message each).
func (b *Broker) BrokerStats() pubsub.BrokerStats {
	b.routeMu.Lock()
	defer b.routeMu.Unlock()
	n := b.publishes.Load()
	return pubsub.BrokerStats{Subscriptions: len(b.subs), PublishRoundTrips: n, PublishedMessages: n}
}

func key(channel string) string { return base64.RawURLEncoding.EncodeToString([]byte(channel)) }

func (b *Broker) subject(kind, channel string) string { return b.tok + "." + kind + "." + key(channel) }

// Start connects and keeps the connection until ctx is done. After every
// (re)connection it makes sure the streams exist, then reports ready and
// calls resync.
func (b *Broker) Start(ctx context.Context, deliver func(pubsub.Message), resync func()) <-chan struct{} {
	stopped := make(chan struct{})
	up := make(chan struct{}, 1)
	onUp := func(*nats.Conn) { wake(up) }
	nc, err := nats.Connect(b.url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ConnectHandler(onUp), nats.ReconnectHandler(onUp), nats.Timeout(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.ready.Store(false)
			b.log.Warn("nats broker disconnected; retrying", "err", err)
		}))
	if err != nil {
		b.log.Error("nats broker", "err", err)
		close(stopped)
		return stopped
	}
	b.nc = nc
	b.js, _ = jetstream.New(nc)
	if nc.IsConnected() {
		wake(up)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.flushRoutes(ctx, deliver) }()
	go func() {
		defer close(stopped)
		defer nc.Close()
		defer wg.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case <-up:
			}
			if err := b.ensureStreams(ctx); err != nil {
				b.log.Warn("nats broker: streams", "err", err)
				select { // try again shortly while connected
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				if nc.IsConnected() {
					wake(up)
				}
				continue
			}
			if !b.ready.Swap(true) {
				b.forgetStates() // the server may have lost its data meanwhile
				b.log.Info("nats broker connected")
				wake(b.kick) // routes waiting for a connection
				resync()
			}
		}
	}()
	return stopped
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ensureStreams creates or updates the four streams.
func (b *Broker) ensureStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	one := func(name, subj string) (jetstream.Stream, error) {
		return b.createOrUpdate(ctx, jetstream.StreamConfig{
			Name: b.tok + "_" + name, Subjects: []string{b.tok + "." + subj + ".*"}, Storage: jetstream.FileStorage,
			MaxMsgsPerSubject: 1, MaxAge: b.ttl, AllowDirect: true,
		})
	}
	msgs, err := b.createOrUpdate(ctx, jetstream.StreamConfig{
		Name: b.tok + "_msgs", Subjects: []string{b.tok + ".ch.>"}, Storage: jetstream.FileStorage,
		MaxMsgsPerSubject: int64(max(b.size, 1)), MaxAge: b.ttl, MaxBytes: b.maxBytes, Discard: jetstream.DiscardOld,
		AllowDirect: true, RePublish: &jetstream.RePublish{Source: b.tok + ".ch.>", Destination: b.tok + ".msg.>"},
	})
	if err != nil {
		return err
	}
	var s streams
	s.msgs = msgs
	if s.chans, err = one("chans", "chan"); err != nil {
		return err
	}
	if s.unread, err = one("unread", "unread"); err != nil {
		return err
	}
	if s.idle, err = one("idle", "idle"); err != nil {
		return err
	}
	b.streams.Store(&s)
	return nil
}

// createOrUpdate makes stream cfg, or updates it when it exists with
// another config. Creating first matters: jetstream's CreateOrUpdateStream
// updates first, and nats-server 2.9.10 (Debian 12's) crashes with a nil
// pointer in stream.updateWithAdvisory when nodes update a stream at once,
// as they do when they start together; a create of an identical stream
// changes nothing.
func (b *Broker) createOrUpdate(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := b.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return b.js.UpdateStream(ctx, cfg)
	}
	return s, err
}

func (b *Broker) conn() (*streams, error) {
	s := b.streams.Load()
	if s == nil || !b.ready.Load() {
		return nil, pubsub.ErrBrokerUnavailable
	}
	return s, nil
}

// last returns the newest message of subj in st, nil if it has none.
func last(ctx context.Context, st jetstream.Stream, subj string) (*jetstream.RawStreamMsg, error) {
	m, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	return m, err
}

// parse reads a republished or stored message of channel.
func parse(channel string, h nats.Header, data []byte) (pubsub.Message, bool) {
	m := pubsub.Message{Channel: channel, Data: data}
	if e := h.Get(hdrEpoch); e != "" {
		off, err := strconv.ParseUint(h.Get(hdrOffset), 10, 64)
		if err != nil {
			return m, false
		}
		m.Position = pubsub.Position{Offset: off, Epoch: e}
	}
	return m, true
}
