package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	pprofhttp "net/http/pprof"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/redact"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/nats"
	"github.com/fanout-ws/fanout/server/pubsub/rabbitmq"
	"github.com/fanout-ws/fanout/server/pubsub/redis"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// listening is what run reports once it serves: the addresses it bound
// (admin empty without -admin-addr).
type listening struct{ addr, admin string }

// run is the whole command: flags and environment to configurations, then
// the server until ctx is done. bound, if not nil, learns the addresses
// once they accept connections.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, bound func(listening)) error {
	if len(args) > 0 && args[0] == "probe" {
		return probe(ctx, args[1:])
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	if err := errors.Join(o.cfg.Validate(), o.channels.Validate(), checkAPIKey(o.apiKey)); err != nil {
		return err
	}
	if o.printConfig {
		return printConfig(stdout, o.flags)
	}
	// Everything start would fail on is checked here, -check-config included.
	if err := o.configureAuth(); err != nil {
		return err
	}
	certs, err := o.loadCerts()
	if err != nil {
		return err
	}
	closeBroker, err := o.configureBroker(logger)
	if err != nil {
		return err
	}
	defer closeBroker()
	if o.checkConfig {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	o.cfg.Logger = logger
	defer o.configureTLS(certs, logger)()
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(gcPauses)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.cfg.Registerer = reg
	app, err := newChatServer(o.cfg, o.channels, o.apiKey)
	if err != nil {
		return err
	}
	defer app.node.Close()
	return o.serve(ctx, app, reg, logger, args, bound)
}

// gcPauses adds the runtime's histogram of stop-the-world GC pauses
// (go_sched_pauses_total_gc_seconds) to the Go collector's defaults: its
// summary of pause quantiles has no p99.
var gcPauses = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/pauses/total/gc:seconds$`)}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// configureTLS serves wss with certs, if loaded, reloading them on
// SIGHUP; the returned func ends the reloads.
func (o *options) configureTLS(certs *certReloader, logger *slog.Logger) (stop func()) {
	if certs == nil {
		return func() {}
	}
	o.cfg.TLS = &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := certs.reload(); err != nil {
				logger.Error("tls reload failed; keeping the old certificate", "err", err)
			} else {
				logger.Info("tls certificate reloaded", "cert", o.tlsCert)
			}
		}
	}()
	return func() { signal.Stop(hup) }
}

// startCPUProfile profiles the run into file, if named, until stop.
func startCPUProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// configureBroker joins other nodes through the broker -broker names;
// closeBroker closes it once the node has stopped.
func (o *options) configureBroker(logger *slog.Logger) (closeBroker func(), err error) {
	if o.broker == "" {
		return func() {}, nil
	}
	bo := o.brokerOptions
	bo.HistorySize, bo.HistoryTTL, bo.HistoryMaxBytes = o.channels.HistorySize, o.channels.HistoryTTL, o.channels.HistoryMaxBytes
	bo.MaxChannels, bo.Logger = o.channels.MaxChannels, logger
	b, closeBroker, err := newBroker(o.broker, bo)
	if err != nil {
		return nil, fmt.Errorf("-broker: %w", err)
	}
	o.channels.Broker = b
	return closeBroker, nil
}

// serve listens, serves app (and the admin listener) until ctx is done or
// POST /admin/drain, then stops (see stop).
func (o *options) serve(ctx context.Context, app *chatServer, reg *prometheus.Registry, logger *slog.Logger, args []string, bound func(listening)) error {
	ln, err := server.Listen(o.cfg.Addr, o.reusePort)
	if err != nil {
		return err
	}
	logger.Info("fanout", "addr", ln.Addr().String(), "routes", "/ws (chat room, or channels with ?channel=), /echo, / (demo page), /api/ (publish API), /healthz, /readyz",
		"api", o.apiKey != "", "broker", redact.URL(o.broker), "reuseport", o.reusePort, "workers", o.cfg.Workers, "max_conns_effective", app.srv.Ceiling())
	addrs := listening{addr: ln.Addr().String()}
	drainReq := make(chan struct{})
	var drainOnce sync.Once
	drain := func() { drainOnce.Do(func() { close(drainReq) }) }
	if o.adminAddr != "" {
		admin, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("-admin-addr: %w", err)
		}
		addrs.admin = admin.Addr().String()
		logger.Info("admin listener", "addr", addrs.admin, "paths", "/metrics /healthz /readyz /debug/pprof/")
		if ta, ok := admin.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			logger.Warn("admin listener is not on a loopback address: metrics and profiles are open to the network; bind -admin-addr to 127.0.0.1 or firewall it", "addr", addrs.admin)
		}
		hs := &http.Server{Handler: adminMux(app, reg, args, drain), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(admin) }()
		defer hs.Close()
	}
	errc := make(chan error, 1)
	go func() { errc <- app.srv.Serve(ln) }()
	select {
	case <-app.srv.Ready():
	case err := <-errc:
		return err
	}
	if bound != nil {
		bound(addrs)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		logger.Info("signal received; draining (a second signal closes at once)")
	case <-drainReq:
		logger.Info("drain requested on the admin listener; draining (a signal closes at once)")
	}
	return o.stop(app.srv, errc, logger)
}

// stop drains the server, -drain-grace then closes paced over
// -drain-duration (none when 0), unless a signal cuts it short; then shuts
// down, sending 1001 to whoever is left, within -shutdown-timeout.
func (o *options) stop(srv *server.Server, errc <-chan error, logger *slog.Logger) error {
	if o.drainDuration > 0 {
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		dctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-again:
				logger.Info("second signal: closing every connection now")
				cancel()
			case <-dctx.Done():
			}
		}()
		_ = srv.Drain(dctx, o.drainGrace, o.drainDuration)
		cancel()
	}
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

// probe is the container health check, for images without a shell or
// curl: `fanout probe URL` succeeds when URL answers 200 within 2 s.
func probe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: fanout probe URL (e.g. http://127.0.0.1:8080/readyz)")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", args[0], resp.Status)
	}
	return nil
}

// minAPIKeyBytes is the shortest -api-key accepted: the HTTP API faces the
// same clients as /ws, and a short key is guessed.
const minAPIKeyBytes = 16

// checkAPIKey refuses an -api-key that does not protect the API: shorter
// than minAPIKeyBytes. Every key the documentation shows is shorter
// (TestRun_APIKeyRefused checks), so a copied example is refused too.
func checkAPIKey(key string) error {
	if key != "" && len(key) < minAPIKeyBytes {
		return fmt.Errorf("-api-key: %d bytes, want at least %d random ones (empty turns the HTTP API off)", len(key), minAPIKeyBytes)
	}
	return nil
}

// secretFlags take values that nothing the process serves or logs may show.
var secretFlags = []string{"api-key", "jwt-secret", "webhook-secret"}

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
			hide = redact.URL
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
	if strings.HasPrefix(rawURL, "nats://") {
		b, err := nats.New(rawURL, o)
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

// configureAuth turns the JWT flags into server.Auth.
func (o *options) configureAuth() error {
	if o.jwtSecret == "" && o.jwtPublicKey == "" {
		if o.authRequired {
			return errors.New("-auth-required needs -jwt-secret or -jwt-public-key")
		}
		return nil
	}
	a := &server.Auth{HMACSecret: []byte(o.jwtSecret), Required: o.authRequired, Audience: o.jwtAudience, Issuer: o.jwtIssuer}
	// Without tokens every client is anonymous: the lists apply only beside them.
	o.channels.AnonymousSubscribe, o.channels.AnonymousPublish = o.anonSubscribe, o.anonPublish
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

// adminMux serves operators, off the public port: Prometheus metrics,
// the health checks, POST /admin/drain (drain, as SIGTERM does) and pprof.
func adminMux(app *chatServer, reg *prometheus.Registry, args []string, drain func()) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/drain", func(w http.ResponseWriter, _ *http.Request) {
		drain()
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "draining")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	app.healthRoutes(mux)
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

// healthRoutes adds liveness and readiness (false once a drain or shutdown
// begins, or while the broker is disconnected) to mux: the public one, which
// load balancers check (the admin listener may be loopback only, and holds
// pprof), and the admin one.
func (a *chatServer) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.srv.Accepting() || !a.node.Ready() {
			http.Error(w, "not accepting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// Route markers, kept in Conn.Data: the /ws chat room, /ws with channels.
// /echo connections carry none.
type (
	room         struct{ hub *server.Hub }
	channelsMode struct{}
)

var inChannels = &channelsMode{}

// errRoomSubscribe refuses a subscribe from a chat-room connection: a
// connection is in the room or has channels, never both, or a room member
// could send it raw messages that pose as its channels' messages.
var errRoomSubscribe = errors.New("the chat room has no channels: subscribe on /ws?channel=... or with the fanout subprotocol")

// chatServer is the engine and the channels on it.
type chatServer struct {
	srv  *server.Server
	node *pubsub.Node
}

// newChatServer wires the routes: /ws joins the room or the channels named
// in its query, /echo echoes, and plain HTTP requests reach the demo page
// and the API. The caller closes its node once the server has shut down.
func newChatServer(cfg server.Config, channels pubsub.Config, apiKey string) (*chatServer, error) {
	r := &room{}
	channels.OnSubscribe = func(c *server.Conn, _ string) error {
		if c.Data() == r {
			return errRoomSubscribe
		}
		return nil
	}
	node, err := pubsub.New(channels)
	if err != nil {
		return nil, err
	}
	cfg.Subprotocols = append(cfg.Subprotocols, "fanout") // offered beside "bearer.<jwt>" by browsers
	cfg.OnExpiring = node.Expiring
	if channels.Proxy.ConnectURL != "" {
		cfg.Admit = node.AdmitConnect
	}
	route := func(c *server.Conn, req *server.Request) error {
		switch req.Path() {
		case "/ws":
			// Clients of the channel protocol (the "fanout" subprotocol, or
			// channels in the URL) stay out of the chat room, whose raw
			// messages could pose as channel messages.
			q := req.Query()
			if len(q["channel"]) > 0 || slices.Contains(req.Protocols, "fanout") {
				c.SetData(inChannels)
				return node.SubscribeQuery(c, q)
			}
			if !node.Allowed(c, pubsub.ActionSubscribe, "ws") {
				return server.Reject(403, "token does not allow subscribing to ws")
			}
			c.SetData(r)
			return r.hub.Join(c)
		case "/echo":
			return nil
		default:
			return server.Reject(404, "no such route; use /ws or /echo")
		}
	}
	cfg.OnConnect = func(c *server.Conn, req *server.Request) error {
		err := node.HandleConnect(c, req) // before route: the hooks of channels in the URL send its headers
		if err == nil {
			err = route(c, req)
		}
		if err != nil {
			node.HandleClose(c) // a refused connection gets no OnClose
		}
		return err
	}
	cfg.OnMessage = func(c *server.Conn, op frame.OpCode, data []byte) {
		switch c.Data() {
		case r:
			if op == frame.OpText && pubsub.IsControl(data) {
				node.HandleControl(c, op, data) // publishes; subscribes are refused
				return
			}
			if !node.Allowed(c, pubsub.ActionPublish, "ws") {
				_ = c.Close(frame.ClosePolicyViolation, "not allowed to publish")
				return
			}
			r.hub.Broadcast(op, data)
		case inChannels:
			node.HandleControl(c, op, data)
		default:
			_ = c.Send(op, data)
		}
	}
	cfg.OnClose = func(c *server.Conn, _ frame.CloseCode, _ server.CloseReason) { node.HandleClose(c) }
	mux := http.NewServeMux()
	mux.Handle("/", webHandler())
	for _, path := range []string{"/ws", "/echo"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Sec-WebSocket-Version", "13")
			http.Error(w, "this is a WebSocket endpoint", http.StatusUpgradeRequired)
		})
	}
	mux.Handle("/api/", node.APIHandler(apiKey))
	cfg.HTTPHandler = mux
	srv, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := node.Start(srv); err != nil {
		return nil, err
	}
	r.hub = srv.NewHub()
	app := &chatServer{srv: srv, node: node}
	app.healthRoutes(mux)
	return app, nil
}
