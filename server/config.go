package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"runtime"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config. The flags of cmd/fanout and the README table read
// these same constants.
const (
	DefaultAddr             = ":8080"
	DefaultMaxConns         = 1_000_000 // clamped to the open-files limit at start
	DefaultMaxMessageBytes  = 64 << 10
	DefaultSendQueueBytes   = 1 << 20
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultPingInterval     = 30 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultCloseTimeout     = 3 * time.Second
	DefaultExpiryWarning    = 30 * time.Second
	DefaultReadBufferBytes  = 32 << 10
	DefaultMaxRequestBytes  = 8 << 10
	DefaultHubBacklogBytes  = 64 << 20
	DefaultIPv6PrefixBits   = 64

	// For Server.Drain (cmd/fanout's -drain-grace and -drain-duration):
	// a few health checks' time, and the spread of the closes.
	DefaultDrainGrace    = 5 * time.Second
	DefaultDrainDuration = 30 * time.Second

	DefaultCompression         = CompressionOn
	DefaultCompressionMinBytes = 256
	DefaultCompressionLevel    = frame.DefaultDeflateLevel
)

// Values of Config.Compression.
const (
	CompressionOn  = "on"  // negotiate permessage-deflate with clients that offer it
	CompressionOff = "off" // never negotiate it
)

// DefaultWorkers is the default size of the read pool: workers never block
// on sockets, so a few per core keep every core busy while leaving room for
// slow application callbacks (OnMessage runs there).
func DefaultWorkers() int { return 8 * runtime.GOMAXPROCS(0) }

// DefaultWriteWorkers is the default number of write workers: one per core.
// A flush never blocks and runs no application code but OnClose, so more
// workers only take turns on the same cores, each for a scheduler time
// slice, while the epoll goroutines wait behind them to read the next
// publish. Measured on one pinned core at 5,000 x 76/s (issue 9): p99 98-106
// ms with 1 write worker, 129-130 with 4, 114-190 with 8.
func DefaultWriteWorkers() int { return runtime.GOMAXPROCS(0) }

// DefaultPollers is the default number of epoll instances per direction.
func DefaultPollers() int { return max(1, runtime.GOMAXPROCS(0)) }

// Config controls a Server. Pass it by value to New, which applies the
// defaults and validates it.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on. Zero means
	// DefaultAddr (":8080").
	Addr string

	// Workers is the size of the read pool: the tasks that read, parse and
	// run OnMessage. Zero means DefaultWorkers() (8 per GOMAXPROCS).
	Workers int

	// WriteWorkers is the number of write workers, which flush hub shards
	// and writable connections. Zero means DefaultWriteWorkers() (one per
	// GOMAXPROCS).
	WriteWorkers int

	// Pollers is the number of epoll instances for reads, and again for
	// writes. Zero means DefaultPollers() (GOMAXPROCS).
	Pollers int

	// MaxConns caps open connections, handshakes and plain HTTP included;
	// beyond it the server answers 503 as soon as it accepts the socket. It
	// is further capped by the open-files limit less a reserve of 256 (for
	// listeners, brokers and refused sockets). Zero means DefaultMaxConns.
	MaxConns int

	// MaxMessageBytes caps the payload of one message, fragments included;
	// larger messages are refused with close code 1009 before they are
	// buffered. Zero means DefaultMaxMessageBytes (64 KiB).
	MaxMessageBytes int

	// SendQueueBytes caps the bytes queued for one connection that the
	// kernel would not take yet, each frame charged its bytes plus its
	// per-frame memory (about 100 bytes: slice header, allocation), so it
	// bounds real memory. A connection past it is a slow consumer and is
	// closed. Zero means DefaultSendQueueBytes (1 MiB).
	SendQueueBytes int

	// HandshakeTimeout bounds the time from accept to a complete upgrade
	// request (TLS handshake included), and each plain HTTP request handed
	// to HTTPHandler (head and body) and its keep-alive idle time. Zero
	// means DefaultHandshakeTimeout (5 s).
	HandshakeTimeout time.Duration

	// PingInterval is how long a connection may stay silent before the
	// server pings it. Zero means DefaultPingInterval (30 s). Negative
	// disables pings.
	PingInterval time.Duration

	// IdleTimeout closes a connection that has sent nothing (not even a
	// pong) for this long. Zero means DefaultIdleTimeout (60 s). Negative
	// disables it.
	IdleTimeout time.Duration

	// CloseTimeout bounds the wait for the peer's close frame (or EOF)
	// after the server sent its own. Zero means DefaultCloseTimeout (3 s).
	CloseTimeout time.Duration

	// ExpiryWarning is how long before a connection's token expires
	// OnExpiring runs, once per expiry (a refresh that moves it rearms it),
	// so that the client can refresh without reconnecting. Zero means
	// DefaultExpiryWarning (30 s). Negative disables it.
	ExpiryWarning time.Duration

	// ReadBufferBytes is the size of the pooled buffer one read fills.
	// Zero means DefaultReadBufferBytes (32 KiB).
	ReadBufferBytes int

	// MaxRequestBytes caps the upgrade request; a longer one gets 431.
	// Zero means DefaultMaxRequestBytes (8 KiB).
	MaxRequestBytes int

	// HubBacklogBytes caps the broadcast frames one hub shard holds while
	// its flush catches up with publishers, charged like SendQueueBytes
	// (frames are shared, so this is not per subscriber). It is the last
	// resort: a shard far less behind already stops the reads of the hub's
	// members, pushing back on the publishers among them. Past it a
	// broadcast is dropped for that shard and counted in Hub.Drops. Zero
	// means DefaultHubBacklogBytes (64 MiB).
	HubBacklogBytes int

	// Compression says whether permessage-deflate (RFC 7692) is negotiated
	// with clients that offer it: CompressionOn or CompressionOff. A
	// broadcast is compressed once, on first need, and the same frame goes
	// to every receiver that negotiated it; no connection keeps compression
	// state. Zero means DefaultCompression ("on").
	Compression string

	// CompressionMinBytes: messages shorter than this are sent
	// uncompressed. Zero means DefaultCompressionMinBytes (256). Negative
	// compresses every message.
	CompressionMinBytes int

	// CompressionLevel is the flate level, 1 (fastest) to 9 (smallest).
	// Zero means DefaultCompressionLevel (5).
	CompressionLevel int

	// HTTPHandler serves the requests that reach Serve's listener and are
	// not WebSocket upgrades (a web page, an API): the connection leaves
	// the poller for net/http, still counted against MaxConns and
	// MaxConnsPerIP until it closes. Each request must arrive whole within
	// HandshakeTimeout and its answer be written within 30 s; a keep-alive
	// connection idles at most HandshakeTimeout. Nil answers them 426
	// Upgrade Required.
	HTTPHandler http.Handler

	// TLS, when set, makes Serve speak wss: the TLS handshake runs on a
	// goroutine per pending handshake (bounded by HandshakeTimeout), then
	// the connection joins the poller like any other. Use GetCertificate to
	// rotate certificates without dropping connections.
	TLS *tls.Config

	// Auth enables JWT authentication at the handshake. Nil accepts every
	// connection anonymously.
	Auth *Auth

	// AllowedOrigins lists the Origin values browsers may connect from, as
	// path.Match patterns ("https://app.example.com", "https://*.example.com"),
	// compared case-insensitively; others get 403 (cross-site WebSocket
	// hijacking protection). Requests without Origin (non-browser clients)
	// pass. Empty allows every origin.
	AllowedOrigins []string

	// MessageRate caps the frames per second one connection may send:
	// every data frame (each fragment of a message) and every ping, pong
	// and close frame costs one token of a bucket of MessageBurst. A
	// message is let through when the bucket holds min(its frames,
	// MessageBurst) tokens and then costs all its frames, so the bucket can
	// go into debt and a flood is paid back at the rate. Over the rate a
	// message is dropped and a ping gets no pong (or, with RateLimitClose,
	// the connection is closed); a close frame always passes. Zero
	// disables it.
	MessageRate float64
	// MessageBurst is the bucket size for MessageRate. Zero means 1.
	MessageBurst int
	// ByteRate caps the payload bytes per second one connection may send,
	// data messages and control frames alike, with the same debt rule as
	// MessageRate (a bucket of max(ByteBurst, MaxMessageBytes)). Zero
	// disables it.
	ByteRate float64
	// ByteBurst is the bucket size for ByteRate, at least MaxMessageBytes.
	ByteBurst int
	// RateLimitClose closes a connection over its rate with 1008; otherwise
	// the message is dropped and counted.
	RateLimitClose bool
	// MaxConnsPerIP caps concurrent connections from one source address
	// (plain HTTP ones included); more get 429 as soon as they are
	// accepted. Zero disables it.
	MaxConnsPerIP int
	// HandshakeRatePerIP caps upgrade requests per second from one source
	// address; more get 429. Zero disables it.
	HandshakeRatePerIP float64
	// MaxHandshakeRate caps new connections per second on this server,
	// from any source (plain HTTP ones on Serve's listener included): a
	// token bucket, with a burst of a tenth of a second's worth (at least
	// 1), checked at admission before any TLS work, so that a reconnect
	// storm cannot take the cores from the connections already open.
	// Beyond it a connection is answered 503 with a Retry-After that books
	// it a place in the seconds ahead at this rate (so N refused at once
	// are told to return over N/rate seconds). Zero disables it.
	MaxHandshakeRate float64
	// IPv6PrefixBits is the prefix length by which the per-IP limits count
	// IPv6 sources: one host commonly holds a whole /64 (or a site a /56 or
	// /48), so counting each address would not limit it. 128 counts each
	// address. Zero means DefaultIPv6PrefixBits (64).
	IPv6PrefixBits int

	// TrustedProxies lists the load balancers in front of the server. Only
	// from these peers is a PROXY protocol header (ProxyProtocol) or a
	// forwarding header (ForwardedHeader) believed; per-IP limits, logs and
	// Conn.RemoteAddr then use the client's address they give. Empty trusts
	// none.
	TrustedProxies []netip.Prefix

	// ProxyProtocol says whether connections from TrustedProxies start with
	// a PROXY protocol v1 or v2 header (before the TLS ClientHello under
	// TLS). From any other peer a PROXY header closes the connection.
	// Zero means ProxyProtocolOff.
	ProxyProtocol ProxyProtocol

	// ForwardedHeader is the header TrustedProxies append the client's
	// address to: HeaderXForwardedFor, HeaderForwarded (RFC 7239) or
	// HeaderNone. Hops are read from the nearest back, past trusted
	// proxies. Trust only proxies that append to it (a client may send its
	// own). Zero means HeaderXForwardedFor.
	ForwardedHeader string

	// Subprotocols lists the accepted Sec-WebSocket-Protocol values in
	// order of preference. Empty accepts none (the header is ignored).
	Subprotocols []string

	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger

	// Registerer receives the server's Prometheus metrics (connections,
	// handshakes by outcome, messages and bytes in and out, write syscalls,
	// broadcasts, drops, evictions, pool saturation, closes by reason, and
	// the broadcast flush latency histogram). Nil registers nothing.
	Registerer prometheus.Registerer

	// OnConnect runs once the upgrade request is read and before the 101
	// is written; a non-nil error rejects the connection (see Reject).
	// Frames sent to c from here on are queued behind the 101. It runs on a
	// worker: do not block.
	OnConnect func(c *Conn, r *Request) error

	// OnExpiring runs ExpiryWarning before c's token expires with the time
	// left (at once if less is left when the token is set). It runs on the
	// timer sweep: do not block.
	OnExpiring func(c *Conn, left time.Duration)

	// OnMessage receives each complete text or binary message. data is only
	// valid until OnMessage returns. It runs on the worker that owns c.
	OnMessage func(c *Conn, op frame.OpCode, data []byte)

	// CheckMessage validates each text or binary message before OnMessage
	// (after size and UTF-8 checks). A non-nil error drops the message, so
	// it never reaches other clients, and closes the connection with 1008
	// and the error's text as reason. data is only valid during the call.
	CheckMessage func(c *Conn, op frame.OpCode, data []byte) error

	// OnClose runs once per connection that reached OnConnect, after it is
	// closed, with the close code sent or received (1006 when none was). It
	// may run on a write worker (a slow consumer is evicted there): do not
	// block.
	OnClose func(c *Conn, code frame.CloseCode, reason CloseReason)

	// OnError receives errors tied to a connection (protocol violations,
	// socket errors) just before it is closed.
	OnError func(c *Conn, err error)
}

func (c Config) withDefaults() Config {
	setDefault(&c.Addr, DefaultAddr)
	setDefault(&c.Workers, DefaultWorkers())
	setDefault(&c.WriteWorkers, DefaultWriteWorkers())
	setDefault(&c.Pollers, DefaultPollers())
	setDefault(&c.MaxConns, DefaultMaxConns)
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.SendQueueBytes, DefaultSendQueueBytes)
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&c.PingInterval, DefaultPingInterval)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.CloseTimeout, DefaultCloseTimeout)
	setDefault(&c.ExpiryWarning, DefaultExpiryWarning)
	setDefault(&c.ReadBufferBytes, DefaultReadBufferBytes)
	setDefault(&c.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&c.HubBacklogBytes, DefaultHubBacklogBytes)
	setDefault(&c.Compression, DefaultCompression)
	setDefault(&c.CompressionMinBytes, DefaultCompressionMinBytes)
	setDefault(&c.CompressionLevel, DefaultCompressionLevel)
	setDefault(&c.ForwardedHeader, HeaderXForwardedFor)
	setDefault(&c.IPv6PrefixBits, DefaultIPv6PrefixBits)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every field that is out of range or inconsistent with
// another, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	positive := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("server: %s (%d) must not be negative", name, v))
		}
	}
	positive("Workers", c.Workers)
	positive("WriteWorkers", c.WriteWorkers)
	positive("Pollers", c.Pollers)
	positive("MaxConns", c.MaxConns)
	positive("MaxMessageBytes", c.MaxMessageBytes)
	positive("SendQueueBytes", c.SendQueueBytes)
	positive("ReadBufferBytes", c.ReadBufferBytes)
	positive("MaxRequestBytes", c.MaxRequestBytes)
	positive("HubBacklogBytes", c.HubBacklogBytes)
	positive("MessageBurst", c.MessageBurst)
	positive("ByteBurst", c.ByteBurst)
	positive("MaxConnsPerIP", c.MaxConnsPerIP)
	if c.Compression != CompressionOn && c.Compression != CompressionOff {
		errs = append(errs, fmt.Errorf("server: Compression (%q) must be %q or %q", c.Compression, CompressionOn, CompressionOff))
	}
	if c.CompressionLevel < 1 || c.CompressionLevel > 9 {
		errs = append(errs, fmt.Errorf("server: CompressionLevel (%d) must be 1 to 9", c.CompressionLevel))
	}
	if c.IPv6PrefixBits < 1 || c.IPv6PrefixBits > 128 {
		errs = append(errs, fmt.Errorf("server: IPv6PrefixBits (%d) must be 1 to 128", c.IPv6PrefixBits))
	}
	if c.MessageRate < 0 || c.ByteRate < 0 || c.HandshakeRatePerIP < 0 || c.MaxHandshakeRate < 0 {
		errs = append(errs, fmt.Errorf("server: MessageRate (%v), ByteRate (%v), HandshakeRatePerIP (%v) and MaxHandshakeRate (%v) must not be negative",
			c.MessageRate, c.ByteRate, c.HandshakeRatePerIP, c.MaxHandshakeRate))
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("server: HandshakeTimeout (%v) must not be negative", c.HandshakeTimeout))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("server: CloseTimeout (%v) must not be negative", c.CloseTimeout))
	}
	if c.MaxMessageBytes > 0 && c.SendQueueBytes > 0 && c.MaxMessageBytes+14 > c.SendQueueBytes {
		errs = append(errs, fmt.Errorf("server: MaxMessageBytes (%d) plus a frame header exceeds SendQueueBytes (%d): one echoed message would evict its sender", c.MaxMessageBytes, c.SendQueueBytes))
	}
	if c.PingInterval > 0 && c.IdleTimeout > 0 && c.IdleTimeout <= c.PingInterval {
		errs = append(errs, fmt.Errorf("server: IdleTimeout (%v) must exceed PingInterval (%v) so a pinged client can answer", c.IdleTimeout, c.PingInterval))
	}
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("server: AllowedOrigins pattern %q: %w", p, err))
		}
	}
	if c.MaxRequestBytes > 0 && c.MaxRequestBytes < 256 {
		errs = append(errs, fmt.Errorf("server: MaxRequestBytes (%d) is below 256, too small for any browser's request", c.MaxRequestBytes))
	}
	if c.ProxyProtocol > ProxyProtocolRequired {
		errs = append(errs, fmt.Errorf("server: ProxyProtocol (%d) is not off, optional or required", c.ProxyProtocol))
	}
	if c.ProxyProtocol != ProxyProtocolOff && len(c.TrustedProxies) == 0 {
		errs = append(errs, fmt.Errorf("server: ProxyProtocol (%v) needs TrustedProxies: a PROXY header is believed only from them", c.ProxyProtocol))
	}
	if c.ForwardedHeader != HeaderXForwardedFor && c.ForwardedHeader != HeaderForwarded && c.ForwardedHeader != HeaderNone {
		errs = append(errs, fmt.Errorf("server: ForwardedHeader (%q) must be %q, %q or %q", c.ForwardedHeader, HeaderXForwardedFor, HeaderForwarded, HeaderNone))
	}
	return errors.Join(errs...)
}
