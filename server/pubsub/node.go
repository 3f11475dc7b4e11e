package pubsub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/internal/pace"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config. The flags of cmd/fanout and the README table read
// these same constants.
const (
	DefaultHistorySize        = 100
	DefaultHistoryTTL         = 5 * time.Minute
	DefaultMaxChannels        = 100_000
	DefaultMaxChannelsPerConn = 64
	DefaultHistoryMaxBytes    = 64 << 20
	DefaultChannelCreateRate  = 10.0
)

// The presence defaults are in presence.go.

// Config controls a Node. Pass it by value to New, which applies the
// defaults and validates it.
type Config struct {
	// Broker assigns channel offsets, keeps history and delivers every
	// channel message to every node: a Redis or RabbitMQ broker joins
	// several processes. Nil means a MemoryBroker of this node's own (HistorySize,
	// HistoryTTL, HistoryMaxBytes, MaxChannels).
	Broker Broker

	// HistorySize is how many recent messages each channel keeps for
	// clients that resubscribe with a since offset. Zero means the
	// broker's (BrokerOptions.HistorySize), or DefaultHistorySize (100).
	// Negative disables history.
	HistorySize int

	// HistoryTTL is how long a channel's message stays in its history.
	// Zero means the broker's, or DefaultHistoryTTL (5 min).
	HistoryTTL time.Duration

	// HistoryMaxBytes caps the memory the history of all channels takes
	// together (message bytes plus a per-message overhead); beyond it the
	// oldest messages of any channel go first. Zero means
	// DefaultHistoryMaxBytes (64 MiB).
	HistoryMaxBytes int64

	// MaxChannels caps the channels that exist at once (a channel lives
	// while it has subscribers or history); subscribing or publishing to a
	// new one beyond it fails with ErrTooManyChannels. At most half of them
	// may be made by publishes alone, so publishers cannot lock subscribers
	// out. Zero means DefaultMaxChannels (100,000).
	MaxChannels int

	// ChannelCreateRate caps how many new channels one connection may make
	// per second (by a subscribe to a channel this node does not carry, or
	// a publish that starts a channel), with a burst of MaxChannelsPerConn;
	// subscribes with since that replay history are capped alike. Zero
	// means DefaultChannelCreateRate (10). Negative disables.
	ChannelCreateRate float64

	// MaxReplayRate caps the history replays (subscribes with since) this
	// node serves per second over all connections: a token bucket with a
	// burst of a tenth of a second's worth (at least 1), so that a thousand
	// clients resuming at once after a reconnect storm cannot starve live
	// delivery. Beyond it a subscribe waits for its turn, off the read
	// workers (its "subscribed" reply and replay come then; at upgrade the
	// 101 comes first), while up to 10 s of turns wait; past that it fails
	// with ErrReplaysBusy and the place booked for its retry at this rate
	// (at upgrade: 503 with that Retry-After). Zero disables it.
	MaxReplayRate float64

	// MaxChannelsPerConn caps one connection's subscriptions. Zero means
	// DefaultMaxChannelsPerConn (64).
	MaxChannelsPerConn int

	// AnonymousSubscribe and AnonymousPublish list the channels (path.Match
	// patterns) a connection without a token may subscribe and publish to
	// (Allowed). Nil allows every channel, more than a token with subscribe
	// or publish claims may do: Start warns when the server checks tokens.
	// An empty, non-nil list allows none.
	AnonymousSubscribe, AnonymousPublish []string

	// PrivateChannels lists the channels (path.Match patterns) a client
	// may subscribe to only with a channel token for that channel and its
	// user ({"op":"subscribe",...,"token":...}, auth.go) or with the
	// consent of the backend's subscribe hook (Proxy.SubscribeURL); its
	// claims and AnonymousSubscribe are not enough. Subscribes made by the
	// application (Node.Subscribe, the connect hook's channels) are not
	// checked. Nil makes no channel private.
	PrivateChannels []string

	// MaxConnsPerUser caps the connections of one user (the token's or
	// the connect hook's "sub") on this node, not in the cluster: the next
	// upgrade is refused with 429 (HandleConnect) and counted. Anonymous
	// connections are not counted. Zero means no cap.
	MaxConnsPerUser int

	// PresenceChannels lists the channels (path.Match patterns) that track
	// their members across every node (presence.go): the presence and
	// presence_stats control ops, GET /api/presence, and join and leave
	// events to their subscribers. Nil tracks none.
	PresenceChannels []string

	// PresenceQuietChannels lists the presence channels (patterns) whose
	// subscribers get no join and leave events: large channels, where one
	// join would cost a message to every member. "*" turns events off.
	PresenceQuietChannels []string

	// PresenceMaxMembers caps the members a presence channel tracks; a
	// client that joins past it is neither tracked nor announced, and the
	// presence answer says truncated. It bounds a node's memory to this
	// many members per presence channel and per node. Zero means
	// DefaultPresenceMaxMembers (1,000).
	PresenceMaxMembers int

	// PresenceExpiry is how long a node keeps another node's members
	// without hearing from it (a node that died); each node repeats its
	// members every third of it. Zero means DefaultPresenceExpiry (15 s).
	PresenceExpiry time.Duration

	// OnSubscribe runs before c joins channel (Node.Subscribe, a subscribe
	// control message or a channel named at connect); a non-nil error
	// refuses it with the error's text. Token claims are checked first
	// (Allowed). It runs on a worker: do not block.
	OnSubscribe func(c *server.Conn, channel string) error

	// OnPublish runs before a publish control message from c reaches
	// channel; a non-nil error refuses it with the error's text. data is
	// the JSON value to publish, only valid during the call.
	OnPublish func(c *server.Conn, channel string, data []byte) error

	// Proxy sends subscribes, publishes, rpc calls and session refreshes
	// to an application's backend over HTTP (proxy.go). Its zero value
	// sends none.
	Proxy Proxy

	// Webhook posts lifecycle events (channels occupied and vacated,
	// presence members added and removed) to an application's backend
	// (webhook.go). Its zero value posts none.
	Webhook Webhook

	// Logger receives the node's logs. Nil means the server's.
	Logger *slog.Logger

	// Registerer receives the node's Prometheus metrics (channels,
	// publications, control errors, API key failures). Nil means the
	// server's Config.Registerer.
	Registerer prometheus.Registerer
}

// withDefaults applies the defaults of the fields a broker shares with the
// node through BrokerOptions.WithDefaults, the one place they are applied.
func (c Config) withDefaults() Config {
	o := c.brokerOptions().WithDefaults()
	c.HistorySize, c.HistoryTTL, c.HistoryMaxBytes, c.MaxChannels = o.HistorySize, o.HistoryTTL, o.HistoryMaxBytes, o.MaxChannels
	setDefault(&c.MaxChannelsPerConn, DefaultMaxChannelsPerConn)
	setDefault(&c.ChannelCreateRate, DefaultChannelCreateRate)
	setDefault(&c.PresenceMaxMembers, DefaultPresenceMaxMembers)
	setDefault(&c.PresenceExpiry, DefaultPresenceExpiry)
	c.Webhook = c.Webhook.withDefaults()
	return c
}

// brokerOptions is what a MemoryBroker of the node's own is built with.
func (c Config) brokerOptions() BrokerOptions {
	return BrokerOptions{HistorySize: c.HistorySize, HistoryTTL: c.HistoryTTL, HistoryMaxBytes: c.HistoryMaxBytes, MaxChannels: c.MaxChannels}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every field that is out of range.
func (c Config) Validate() error {
	var errs []error
	if c.MaxChannels < 0 {
		errs = append(errs, fmt.Errorf("pubsub: MaxChannels (%d) must not be negative", c.MaxChannels))
	}
	if c.MaxChannelsPerConn < 0 {
		errs = append(errs, fmt.Errorf("pubsub: MaxChannelsPerConn (%d) must not be negative", c.MaxChannelsPerConn))
	}
	if c.HistoryMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("pubsub: HistoryMaxBytes (%d) must not be negative", c.HistoryMaxBytes))
	}
	if c.MaxReplayRate < 0 {
		errs = append(errs, fmt.Errorf("pubsub: MaxReplayRate (%v) must not be negative", c.MaxReplayRate))
	}
	if c.HistoryTTL < 0 {
		errs = append(errs, fmt.Errorf("pubsub: HistoryTTL (%v) must not be negative", c.HistoryTTL))
	}
	if c.MaxConnsPerUser < 0 {
		errs = append(errs, fmt.Errorf("pubsub: MaxConnsPerUser (%d) must not be negative", c.MaxConnsPerUser))
	}
	if c.PresenceMaxMembers < 0 {
		errs = append(errs, fmt.Errorf("pubsub: PresenceMaxMembers (%d) must not be negative", c.PresenceMaxMembers))
	}
	if c.PresenceExpiry < 0 || c.PresenceExpiry > 0 && c.PresenceExpiry < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("pubsub: PresenceExpiry (%v) must be at least 300ms", c.PresenceExpiry))
	}
	for _, p := range slices.Concat(c.AnonymousSubscribe, c.AnonymousPublish, c.PrivateChannels, c.PresenceChannels, c.PresenceQuietChannels) {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("pubsub: channel pattern %q: %w", p, err))
		}
	}
	errs = append(errs, c.Proxy.validate()...)
	errs = append(errs, c.Webhook.validate()...)
	return errors.Join(errs...)
}

// historyLimiter is a Broker that reports the history it keeps
// (MemoryBroker and the Redis broker do).
type historyLimiter interface {
	HistoryLimits() (size int, ttl time.Duration)
}

// historyFromBroker takes HistorySize and HistoryTTL from a broker that
// reports them, so they are set in one place; a different value set here
// as well is an error, not a silent mismatch.
func (c *Config) historyFromBroker() error {
	h, ok := c.Broker.(historyLimiter)
	if !ok {
		return nil
	}
	size, ttl := h.HistoryLimits()
	if c.HistorySize != 0 && c.HistorySize != size || c.HistoryTTL != 0 && c.HistoryTTL != ttl {
		return fmt.Errorf("pubsub: HistorySize and HistoryTTL (%d, %v) differ from the broker's (%d, %v): set them on the broker only", c.HistorySize, c.HistoryTTL, size, ttl)
	}
	c.HistorySize, c.HistoryTTL = size, ttl
	return nil
}

// Node is this process's share of the channels: the channels its
// connections subscribe to, each a server.Hub fed by the Broker, which
// joins the nodes. Create it with New, before its Server (whose hooks call
// its methods), start it on the Server with Start, and stop it with Close;
// it is safe for concurrent use.
type Node struct {
	srv    *server.Server
	cfg    Config
	broker Broker
	log    *slog.Logger
	// From the server's Config: what a client may be sent.
	maxMessageBytes, sendQueueBytes int

	chans    registry
	bus      *bus      // notes to every node (bus.go)
	presence *presence // members of presence channels (presence.go)
	users    users     // this node's connections by user (users.go)
	backend  *backend  // the backend hooks (proxy.go), or nil
	webhooks *webhooks // the lifecycle webhooks (webhook.go), or nil
	pending  pendingSubs
	creators connRate      // new channels per connection
	replays  connRate      // history replays per connection
	replayed *pace.Limiter // history replays of the whole node (Config.MaxReplayRate), or nil
	// replayTurns holds a channel per replay waiting for its turn of
	// replayed, in order (pacing.go).
	replayTurns chan *channel
	chores      atomic.Bool // a goroutine touches and releases channels in the broker (sweep)
	released    []string    // channels removed here, for the broker to learn (sweeper only)
	stats       counters
	lastWarn    atomic.Int64

	started       atomic.Bool
	stop          context.CancelFunc
	brokerStopped <-chan struct{}
	swept         chan struct{} // closed when the sweeper has returned
	wg            sync.WaitGroup
	closeOnce     sync.Once
}

// New validates cfg and returns a node that does nothing until Start.
// It does no I/O.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.historyFromBroker(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:      cfg,
		broker:   cfg.Broker,
		chans:    registry{m: make(map[string]*channel), hubs: make(map[*server.Hub]struct{})},
		pending:  pendingSubs{m: make(map[*server.Conn]int)},
		creators: newConnRate(cfg.ChannelCreateRate, cfg.MaxChannelsPerConn, ErrTooManyChannels, "this connection makes new channels faster than %g a second"),
		// A replay may be half the send queue: a connection recovers all its
		// channels at once, then at the rate of new channels.
		replays:  newConnRate(cfg.ChannelCreateRate, cfg.MaxChannelsPerConn, ErrTooManyReplays, "more than %g a second on this connection"),
		bus:      newBus(),
		presence: newPresence(cfg),
		users:    users{m: make(map[string][]*server.Conn)},
		swept:    make(chan struct{}),
		stop:     func() {},
	}
	if cfg.MaxReplayRate > 0 {
		n.replayed = pace.New(cfg.MaxReplayRate)
		n.replayTurns = make(chan *channel, replayQueueLen(cfg.MaxReplayRate))
	}
	if n.broker == nil {
		n.broker = NewMemoryBroker(cfg.brokerOptions())
	}
	n.handlePresence()
	n.handleUsers()
	if cfg.Proxy.on() {
		n.backend = newBackend(cfg.Proxy)
	}
	if cfg.Webhook.URL != "" {
		n.webhooks = newWebhooks(cfg.Webhook)
	}
	return n, nil
}

// Start runs the node on srv, before srv serves: the broker delivers from
// now on, the node bus runs, and a sweeper forgets channels without
// subscribers. Close stops them. The node logs to, and registers its metrics with, srv's Logger and
// Registerer unless Config sets its own. Start works once.
func (n *Node) Start(srv *server.Server) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("pubsub: node started twice")
	}
	sc := srv.Config()
	n.srv = srv
	n.maxMessageBytes, n.sendQueueBytes = sc.MaxMessageBytes, sc.SendQueueBytes
	n.log = cmp.Or(n.cfg.Logger, sc.Logger).With("component", "pubsub")
	reg := n.cfg.Registerer
	if reg == nil {
		reg = sc.Registerer
	}
	if reg != nil {
		if err := reg.Register(newMetrics(n)); err != nil {
			return fmt.Errorf("pubsub: register metrics: %w", err)
		}
	}
	n.warnAnonymousWide(sc.Auth)
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.brokerStopped = n.broker.Start(ctx, n.deliver, n.resync)
	n.bus.route(n.broker)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.bus.run(ctx, n.broker)
	}()
	if len(n.cfg.PresenceChannels) > 0 || n.webhooks != nil { // else the bus carries no presence note
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runPresence(ctx)
		}()
	}
	if n.webhooks != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runWebhooks(ctx)
		}()
	}
	if n.replayed != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runReplays(ctx)
		}()
	}
	go func() {
		defer close(n.swept)
		everySecond(ctx, func() {
			now := time.Now()
			n.sweep()
			n.creators.sweep(now)
			n.replays.sweep(now)
		})
	}()
	return nil
}

// Close stops the broker's deliveries to this node and the sweeper, and
// waits for them. Close a node after its server has shut down: then it
// tells the other nodes that its presence members are gone (goodbye).
// Later calls do nothing.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if !n.started.Swap(true) {
			return // never started
		}
		n.goodbye()
		n.stop()
		if n.backend != nil {
			n.backend.close()
		}
		<-n.brokerStopped
		<-n.swept
		n.wg.Wait()
	})
}

// Ready reports whether the broker is connected and delivering.
func (n *Node) Ready() bool { return n.broker.Ready() }

// clientID names c across the cluster: this node's run, then c's id. The
// backend hooks and presence members carry it.
func (n *Node) clientID(c *server.Conn) string {
	return string(n.bus.id) + "-" + strconv.FormatUint(c.ID(), 10)
}

// everySecond runs f once a second until ctx is done.
func everySecond(ctx context.Context, f func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// warnSampled logs at Warn at most once a second; the rest are counted in
// metrics only.
func (n *Node) warnSampled(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := n.lastWarn.Load()
	if now-last < int64(time.Second) || !n.lastWarn.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn(msg, args...)
}
