// Command fanout runs a Fanout WebSocket server: /ws is a chat room (every
// message goes to every client, sender included) or, with ?channel=, a set of
// channel subscriptions driven by JSON control messages; /echo sends each
// message back to its sender. The same port serves the demo page at / and
// the HTTP publish API at /api/.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	pprofhttp "net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/rabbitmq"
	"github.com/fanout-ws/fanout/server/pubsub/redis"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// options is everything the command line sets.
type options struct {
	cfg             server.Config
	channels        pubsub.Config
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
	adminAddr       string
	jwtSecret       string
	jwtPublicKey    string
	authRequired    bool
	jwtAudience     string
	jwtIssuer       string
	anonSubscribe   []string // nil: every channel
	anonPublish     []string
	tlsCert         string
	tlsKey          string
	printConfig     bool
	checkConfig     bool
	cpuProfile      string
	apiKey          string
	broker          string
	reusePort       bool
}

// parseFlags binds flags to opts. Defaults come from the server constants,
// then FANOUT_* environment variables, then the flags themselves.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &o.cfg
	fs.StringVar(&c.Addr, "addr", server.DefaultAddr, "TCP address to listen on")
	fs.IntVar(&c.Workers, "workers", server.DefaultWorkers(), "size of each worker pool (reads, writes)")
	fs.IntVar(&c.Pollers, "pollers", server.DefaultPollers(), "epoll instances per direction")
	fs.IntVar(&c.MaxConns, "max-conns", server.DefaultMaxConns, "maximum open connections (capped by the open-files limit); beyond it 503")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", server.DefaultMaxMessageBytes, "maximum message payload in bytes; larger ones close with 1009")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", server.DefaultSendQueueBytes, "per-connection send queue limit in bytes; past it the client is evicted as a slow consumer")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "time allowed from accept to a complete upgrade request")
	fs.DurationVar(&c.PingInterval, "ping-interval", server.DefaultPingInterval, "ping a connection silent for this long (negative disables)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a connection silent for this long (negative disables)")
	fs.DurationVar(&c.CloseTimeout, "close-timeout", server.DefaultCloseTimeout, "wait this long for the peer's close frame")
	fs.IntVar(&c.ReadBufferBytes, "read-buffer-bytes", server.DefaultReadBufferBytes, "size of the pooled buffer one read fills")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "maximum upgrade request size; larger gets 431")
	fs.IntVar(&c.HubBacklogBytes, "hub-backlog-bytes", server.DefaultHubBacklogBytes, "broadcast bytes one hub shard may hold while its flush catches up; beyond it broadcasts are dropped and counted")
	fs.Float64Var(&c.MessageRate, "message-rate", 0, "messages per second one connection may send (token bucket); 0 disables")
	fs.IntVar(&c.MessageBurst, "message-burst", 0, "bucket size for -message-rate (0 means 1)")
	fs.Float64Var(&c.ByteRate, "byte-rate", 0, "payload bytes per second one connection may send; 0 disables")
	fs.IntVar(&c.ByteBurst, "byte-burst", 0, "bucket size for -byte-rate (at least -max-message-bytes)")
	fs.BoolVar(&c.RateLimitClose, "rate-limit-close", false, "close a connection over its rate with 1008 instead of dropping the message")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "concurrent connections per source address; more get 429; 0 disables")
	fs.Float64Var(&c.HandshakeRatePerIP, "handshake-rate-per-ip", 0, "upgrade requests per second per source address; more get 429; 0 disables")
	fs.Func("trusted-proxies", "comma-separated addresses or CIDRs of the load balancers in front (10.0.0.0/8,192.0.2.7): only their PROXY headers and forwarding headers are believed; per-IP limits, logs and client addresses then use the client's own", func(v string) error {
		c.TrustedProxies = nil
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if !strings.Contains(p, "/") {
				a, err := netip.ParseAddr(p)
				if err != nil {
					return err
				}
				p = netip.PrefixFrom(a, a.BitLen()).String()
			}
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return err
			}
			c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
		}
		return nil
	})
	fs.TextVar(&c.ProxyProtocol, "proxy-protocol", server.ProxyProtocolOff, "PROXY protocol v1/v2 header from -trusted-proxies: off, optional or required (a header from any other peer closes the connection)")
	fs.StringVar(&c.ForwardedHeader, "forwarded-header", server.HeaderXForwardedFor, "header -trusted-proxies append the client's address to: X-Forwarded-For, Forwarded or none")
	p := &o.channels
	fs.IntVar(&p.HistorySize, "history-size", pubsub.DefaultHistorySize, "messages each channel keeps for clients that resubscribe with since=<offset> (negative disables)")
	fs.DurationVar(&p.HistoryTTL, "history-ttl", pubsub.DefaultHistoryTTL, "how long a channel message stays in history")
	fs.Int64Var(&p.HistoryMaxBytes, "history-max-bytes", pubsub.DefaultHistoryMaxBytes, "memory all channels' history may take together (message bytes plus per-message overhead); the oldest messages go first")
	fs.IntVar(&p.MaxChannels, "max-channels", pubsub.DefaultMaxChannels, "channels that may exist at once (with subscribers or history); at most half of them made by publishes alone")
	fs.Float64Var(&p.ChannelCreateRate, "channel-create-rate", pubsub.DefaultChannelCreateRate, "new channels one connection may make per second, and history replays it may ask for, with a burst of -max-channels-per-conn (negative disables)")
	fs.IntVar(&p.MaxChannelsPerConn, "max-channels-per-conn", pubsub.DefaultMaxChannelsPerConn, "subscriptions one connection may hold")
	fs.StringVar(&o.apiKey, "api-key", "", "key for the HTTP API (POST /api/publish, GET /api/channels) as \"Authorization: Bearer <key>\" or X-API-Key; empty disables the API")
	fs.StringVar(&o.broker, "broker", "", "message broker joining several fanout nodes: redis://[user:password@]host:port/db, or a RabbitMQ stream, rabbitmq-stream://user:password@host:5552/vhost[?stream=fanout&max-age=6m&max-length-bytes=N&history-max-bytes=N]; empty keeps channels in this process")
	fs.BoolVar(&o.reusePort, "reuseport", false, "listen with SO_REUSEPORT so several fanout processes share -addr (the kernel balances accepts)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve wss; reloaded on SIGHUP without dropping connections")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file for -tls-cert")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "verify HS256 JWTs with this secret (token from Authorization: Bearer, ?token= or a \"bearer.<jwt>\" subprotocol entry)")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file with an RSA or ECDSA public key: verify RS256/ES256 JWTs")
	fs.BoolVar(&o.authRequired, "auth-required", false, "refuse connections without a valid token (401); otherwise they are anonymous. Tokens must carry exp; a connection is closed with 1008 \"token expired\" when it passes")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "require this value in the token's aud")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "require this value as the token's iss")
	fs.Func("anonymous-subscribe", "with JWT auth, comma-separated channel patterns (path.Match) anonymous clients may subscribe to; empty allows none. Unset allows every channel (warned at start)", patterns(&o.anonSubscribe))
	fs.Func("anonymous-publish", "with JWT auth, comma-separated channel patterns anonymous clients may publish to; empty allows none. Unset allows every channel (warned at start)", patterns(&o.anonPublish))
	fs.Func("allowed-origins", "comma-separated Origin patterns browsers may connect from (path.Match syntax, e.g. https://*.example.com); others get 403. Empty allows all", func(v string) error {
		c.AllowedOrigins = nil
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, p)
			}
		}
		return nil
	})
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM/SIGINT, wait this long for close handshakes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.adminAddr, "admin-addr", "", "admin listener for /metrics (Prometheus), /healthz, /readyz and /debug/pprof, e.g. 127.0.0.1:9090; empty disables it. Keep it off the public port")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration as JSON and exit")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fanout [flags]\n\nServes /ws (a chat room; with ?channel=name, channels), /echo, the demo page at / and the HTTP API at /api/.\nEvery flag can also be set as FANOUT_<NAME> (e.g. FANOUT_MAX_CONNS=5000); flags win.\n\n")
		fs.PrintDefaults()
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := "FANOUT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	var handler slog.Handler
	switch o.logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		return fmt.Errorf("-log-format %q: want text or json", o.logFormat)
	}
	logger := slog.New(handler)
	if err := errors.Join(o.cfg.Validate(), o.channels.Validate()); err != nil {
		return err
	}
	if o.printConfig {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(printable(o))
	}
	// Everything start would fail on is checked here, -check-config included.
	if err := o.configureAuth(); err != nil {
		return err
	}
	certs, err := o.loadCerts()
	if err != nil {
		return err
	}
	if o.broker != "" {
		b, closeBroker, err := newBroker(o.broker, pubsub.BrokerOptions{
			HistorySize: o.channels.HistorySize, HistoryTTL: o.channels.HistoryTTL, HistoryMaxBytes: o.channels.HistoryMaxBytes,
			MaxChannels: o.channels.MaxChannels, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("-broker: %w", err)
		}
		defer closeBroker()
		o.channels.Broker = b
	}
	if o.checkConfig {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	o.cfg.Logger = logger
	if certs != nil {
		o.cfg.TLS = &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if err := certs.reload(); err != nil {
					logger.Error("tls reload failed; keeping the old certificate", "err", err)
				} else {
					logger.Info("tls certificate reloaded", "cert", o.tlsCert)
				}
			}
		}()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.cfg.Registerer = reg
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	app, err := newChatServer(o.cfg, o.channels, o.apiKey)
	if err != nil {
		return err
	}
	defer app.node.Close()
	srv := app.srv
	ln, err := listen(o.cfg.Addr, o.reusePort)
	if err != nil {
		return err
	}
	logger.Info("fanout", "addr", ln.Addr().String(), "routes", "/ws (chat room, or channels with ?channel=), /echo, / (demo page), /api/ (publish API)",
		"api", o.apiKey != "", "broker", redactURL(o.broker), "reuseport", o.reusePort, "workers", o.cfg.Workers, "max_conns_effective", srv.Ceiling())
	errc := make(chan error, 2)
	if o.adminAddr != "" {
		admin, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("-admin-addr: %w", err)
		}
		logger.Info("admin listener", "addr", admin.Addr().String(), "paths", "/metrics /healthz /readyz /debug/pprof/")
		if ta, ok := admin.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			logger.Warn("admin listener is not on a loopback address: metrics and profiles are open to the network; bind -admin-addr to 127.0.0.1 or firewall it", "addr", admin.Addr().String())
		}
		hs := &http.Server{Handler: adminMux(app, reg, args), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(admin) }()
		defer hs.Close()
	}
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("signal received; draining", "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown cut connections", "err", err)
	}
	if err := <-errc; !errors.Is(err, server.ErrServerClosed) {
		return err
	}
	return nil
}

// listen opens the TCP listener, with SO_REUSEPORT when asked so that
// several processes share one port.
func listen(addr string, reusePort bool) (net.Listener, error) {
	var lc net.ListenConfig
	if reusePort {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// secretFlags take values that nothing the process serves or logs may show.
var secretFlags = []string{"api-key", "jwt-secret"}

// redactArgs hides the values of secretFlags and a broker URL's password in
// a command line (-name value, -name=value, with one or two dashes), for
// /debug/pprof/cmdline. Prefer FANOUT_API_KEY and FANOUT_JWT_SECRET: the
// kernel shows every process's arguments to local users.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(out[i], "-"), "=")
		if !strings.HasPrefix(out[i], "-") {
			continue
		}
		var hide func(string) string
		switch {
		case slices.Contains(secretFlags, name):
			hide = func(string) string { return "REDACTED" }
		case name == "broker":
			hide = redactURL
		default:
			continue
		}
		if hasValue {
			out[i] = out[i][:len(out[i])-len(value)] + hide(value)
		} else if i+1 < len(out) {
			i++
			out[i] = hide(out[i])
		}
	}
	return out
}

// newBroker returns the broker that -broker's URL scheme names, and what
// closes it once the node has stopped.
func newBroker(rawURL string, o pubsub.BrokerOptions) (pubsub.Broker, func(), error) {
	if strings.HasPrefix(rawURL, "rabbitmq-stream://") || strings.HasPrefix(rawURL, "rabbitmq-stream+tls://") {
		b, err := rabbitmq.New(rawURL, o)
		if err != nil {
			return nil, nil, err
		}
		return b, func() {}, nil // its connection ends with the node
	}
	b, err := redis.New(rawURL, o)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = b.Close() }, nil
}

// redactURL hides a password in a broker URL for logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// certReloader serves the current certificate and swaps it on reload, so
// new handshakes get the new one and open connections keep theirs.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// loadCerts loads -tls-cert and -tls-key, if set; they go together.
func (o *options) loadCerts() (*certReloader, error) {
	switch {
	case o.tlsCert == "" && o.tlsKey == "":
		return nil, nil
	case o.tlsKey == "":
		return nil, errors.New("-tls-cert needs -tls-key (the certificate's private key file)")
	case o.tlsCert == "":
		return nil, errors.New("-tls-key needs -tls-cert (the certificate file)")
	}
	return newCertReloader(o.tlsCert, o.tlsKey)
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	return r, r.reload()
}

func (r *certReloader) reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	r.cert.Store(&c)
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil }

// patterns sets *dst from a comma-separated list; an empty value makes it
// empty but not nil (nothing allowed).
func patterns(dst *[]string) func(string) error {
	return func(v string) error {
		*dst = []string{}
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*dst = append(*dst, p)
			}
		}
		return nil
	}
}

// configureAuth turns the JWT flags into server.Auth.
func (o *options) configureAuth() error {
	if o.jwtSecret == "" && o.jwtPublicKey == "" {
		if o.authRequired {
			return errors.New("-auth-required needs -jwt-secret or -jwt-public-key")
		}
		return nil
	}
	a := &server.Auth{HMACSecret: []byte(o.jwtSecret), Required: o.authRequired, Audience: o.jwtAudience, Issuer: o.jwtIssuer,
		AnonymousSubscribe: o.anonSubscribe, AnonymousPublish: o.anonPublish}
	if o.jwtPublicKey != "" {
		pemBytes, err := os.ReadFile(o.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("-jwt-public-key: %w", err)
		}
		if a.PublicKey, err = jwt.ParseRSAPublicKeyFromPEM(pemBytes); err != nil {
			if a.PublicKey, err = jwt.ParseECPublicKeyFromPEM(pemBytes); err != nil {
				return fmt.Errorf("-jwt-public-key %s: neither an RSA nor an ECDSA public key", o.jwtPublicKey)
			}
		}
	}
	o.cfg.Auth = a
	return nil
}

// printable is the effective configuration, defaults applied.
func printable(o *options) map[string]any {
	c, p := o.cfg, o.channels
	return map[string]any{
		"addr": c.Addr, "workers": c.Workers, "pollers": c.Pollers, "max_conns": c.MaxConns,
		"max_message_bytes": c.MaxMessageBytes, "send_queue_bytes": c.SendQueueBytes,
		"handshake_timeout": c.HandshakeTimeout.String(), "ping_interval": c.PingInterval.String(),
		"idle_timeout": c.IdleTimeout.String(), "close_timeout": c.CloseTimeout.String(),
		"read_buffer_bytes": c.ReadBufferBytes, "max_request_bytes": c.MaxRequestBytes,
		"hub_backlog_bytes": c.HubBacklogBytes,
		"shutdown_timeout":  o.shutdownTimeout.String(), "log_level": o.logLevel,
		"log_format": o.logFormat, "admin_addr": o.adminAddr, "allowed_origins": c.AllowedOrigins,
		"message_rate": c.MessageRate, "message_burst": c.MessageBurst, "byte_rate": c.ByteRate, "byte_burst": c.ByteBurst,
		"rate_limit_close": c.RateLimitClose, "auth_required": o.authRequired,
		"jwt_secret_set": o.jwtSecret != "", "jwt_public_key": o.jwtPublicKey, "jwt_audience": o.jwtAudience, "jwt_issuer": o.jwtIssuer,
		"anonymous_subscribe": o.anonSubscribe, "anonymous_publish": o.anonPublish,
		"tls_cert": o.tlsCert, "tls_key": o.tlsKey, "max_conns_per_ip": c.MaxConnsPerIP, "handshake_rate_per_ip": c.HandshakeRatePerIP,
		"history_size": p.HistorySize, "history_ttl": p.HistoryTTL.String(), "max_channels": p.MaxChannels,
		"history_max_bytes": p.HistoryMaxBytes, "channel_create_rate": p.ChannelCreateRate,
		"max_channels_per_conn": p.MaxChannelsPerConn, "api_key_set": o.apiKey != "",
		"broker": redactURL(o.broker), "reuseport": o.reusePort,
		"trusted_proxies": c.TrustedProxies, "proxy_protocol": c.ProxyProtocol.String(), "forwarded_header": c.ForwardedHeader,
	}
}

// adminMux serves operators, off the public port: Prometheus metrics,
// liveness, readiness (false once shutdown begins, or while the broker is
// disconnected) and pprof.
func adminMux(app *chatServer, reg *prometheus.Registry, args []string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !app.srv.Accepting() || !app.node.Ready() {
			http.Error(w, "not accepting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprofhttp.Index)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, strings.Join(append([]string{os.Args[0]}, redactArgs(args)...), "\x00"))
	})
	mux.HandleFunc("/debug/pprof/profile", pprofhttp.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprofhttp.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprofhttp.Trace)
	return mux
}

// Route markers, kept in Conn.Data: the /ws chat room, /ws with channels.
// /echo connections carry none.
type (
	room         struct{ hub *server.Hub }
	channelsMode struct{}
)

var inChannels = &channelsMode{}

// chatServer is the engine and the channels on it.
type chatServer struct {
	srv  *server.Server
	node *pubsub.Node
}

// newChatServer wires the routes: /ws joins the room or the channels named
// in its query, /echo echoes, and plain HTTP requests reach the demo page
// and the API. The caller closes its node once the server has shut down.
func newChatServer(cfg server.Config, channels pubsub.Config, apiKey string) (*chatServer, error) {
	var (
		r   room
		app chatServer
	)
	cfg.Subprotocols = append(cfg.Subprotocols, "fanout") // offered beside "bearer.<jwt>" by browsers
	cfg.OnConnect = func(c *server.Conn, req *server.Request) error {
		switch req.Path() {
		case "/ws":
			// Clients of the channel protocol (the "fanout" subprotocol, or
			// channels in the URL) stay out of the chat room, whose raw
			// messages could pose as channel messages.
			q := req.Query()
			if len(q["channel"]) > 0 || slices.Contains(req.Protocols, "fanout") {
				c.SetData(inChannels)
				return app.node.SubscribeQuery(c, q)
			}
			if !c.Allowed("subscribe", "ws") {
				return server.Reject(403, "token does not allow subscribing to ws")
			}
			c.SetData(&r)
			return r.hub.Join(c)
		case "/echo":
			return nil
		default:
			return server.Reject(404, "no such route; use /ws or /echo")
		}
	}
	cfg.OnMessage = func(c *server.Conn, op frame.OpCode, data []byte) {
		switch c.Data() {
		case &r:
			if op == frame.OpText && pubsub.IsControl(data) {
				app.node.HandleControl(c, op, data)
				return
			}
			if !c.Allowed("publish", "ws") {
				_ = c.Close(frame.ClosePolicyViolation, "not allowed to publish")
				return
			}
			r.hub.Broadcast(op, data)
		case inChannels:
			app.node.HandleControl(c, op, data)
		default:
			_ = c.Send(op, data)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", webHandler())
	for _, path := range []string{"/ws", "/echo"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Sec-WebSocket-Version", "13")
			http.Error(w, "this is a WebSocket endpoint", http.StatusUpgradeRequired)
		})
	}
	var api http.Handler // needs the node: set below, before anything is served
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) }))
	cfg.HTTPHandler = mux
	var err error
	if app.srv, err = server.New(cfg); err != nil {
		return nil, err
	}
	if app.node, err = pubsub.New(app.srv, channels); err != nil {
		return nil, err
	}
	api = app.node.APIHandler(apiKey)
	r.hub = app.srv.NewHub()
	return &app, nil
}
