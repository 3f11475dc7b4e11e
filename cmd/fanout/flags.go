package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fanout-ws/fanout/internal/redact"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
)

// options is everything the command line sets.
type options struct {
	cfg             server.Config
	channels        pubsub.Config
	shutdownTimeout time.Duration
	drainGrace      time.Duration
	drainDuration   time.Duration
	logLevel        string
	logFormat       string
	adminAddr       string
	jwtSecret       string
	jwtPublicKey    string
	authRequired    bool
	tlsCert         string
	tlsKey          string
	jwtAudience     string
	jwtIssuer       string
	anonSubscribe   []string // nil: every channel
	anonPublish     []string
	presenceEvents  bool // false: every presence channel is quiet
	printConfig     bool
	checkConfig     bool
	cpuProfile      string
	apiKey          string
	broker          string
	brokerOptions   pubsub.BrokerOptions // beside the channels' bounds: the broker's own
	reusePort       bool
	flags           *flag.FlagSet // for -print-config
}

// parseFlags binds flags to opts. Defaults come from the server constants,
// then FANOUT_* environment variables, then the flags themselves.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindServerFlags(fs, &o.cfg)
	bindChannelFlags(fs, &o.channels)
	fs.BoolVar(&o.presenceEvents, "presence-events", true, "send join and leave events to the subscribers of presence channels; false turns them off everywhere (-presence-quiet-channels: for some)")
	fs.StringVar(&o.apiKey, "api-key", "", "key for the HTTP API (POST /api/publish, GET /api/channels) as \"Authorization: Bearer <key>\" or X-API-Key; empty disables the API")
	fs.StringVar(&o.broker, "broker", "", "message broker joining several fanout nodes: redis://[user:password@]host:port/db, a Redis Cluster, redis-cluster://[user:password@]host:port,host:port,..., a RabbitMQ stream, rabbitmq-stream://user:password@host:5552/vhost[?stream=fanout], or NATS JetStream, nats://[user:password@]host:4222; empty keeps channels in this process")
	fs.DurationVar(&o.brokerOptions.Retention, "broker-retention", 0, "with a RabbitMQ broker, how long the stream keeps messages (its max-age); at least -history-ttl plus 30 s; 0 means -history-ttl plus 1 min")
	fs.Int64Var(&o.brokerOptions.RetentionBytes, "broker-retention-bytes", pubsub.DefaultRetentionBytes, "with a RabbitMQ broker, the stream's size on the broker's disk (its max-length-bytes, in segments of 1/16 of it); keep it above -history-ttl worth of traffic")
	fs.BoolVar(&o.reusePort, "reuseport", false, "listen with SO_REUSEPORT so several fanout processes share -addr (the kernel balances accepts)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve wss; reloaded on SIGHUP without dropping connections")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file for -tls-cert")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "verify HS256 JWTs with this secret (token from Authorization: Bearer, ?token= or a \"bearer.<jwt>\" subprotocol entry)")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file with an RSA or ECDSA public key: verify RS256/ES256 JWTs")
	fs.BoolVar(&o.authRequired, "auth-required", false, "refuse connections without a valid token (401); otherwise they are anonymous. Tokens must carry exp; a connection is closed with 1008 \"token expired\" when it passes")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "require this value in the token's aud")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "require this value as the token's iss")
	fs.Var(listFlag[string]{&o.anonSubscribe, identity}, "anonymous-subscribe", "with JWT auth, comma-separated channel patterns (path.Match) anonymous clients may subscribe to; empty allows none. Unset allows every channel (warned at start)")
	fs.Var(listFlag[string]{&o.anonPublish, identity}, "anonymous-publish", "with JWT auth, comma-separated channel patterns anonymous clients may publish to; empty allows none. Unset allows every channel (warned at start)")
	fs.DurationVar(&o.drainGrace, "drain-grace", server.DefaultDrainGrace, "on SIGTERM/SIGINT or POST /admin/drain, /readyz answers 503 at once and the listener keeps accepting this long (for the load balancer's health checks to notice), then closes")
	fs.DurationVar(&o.drainDuration, "drain-duration", server.DefaultDrainDuration, "then close the connections in small batches spread over this long, with 1012 and a reconnect hint; 0 closes them all at once with 1001 and no grace, as does a second signal")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "after the drain, wait this long for close handshakes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.adminAddr, "admin-addr", "", "admin listener for /metrics (Prometheus), /debug/pprof, POST /admin/drain, /healthz and /readyz (also on -addr, for load balancers), e.g. 127.0.0.1:9090; empty disables it. Keep it on loopback")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration as JSON and exit")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fanout [flags]\n       fanout probe URL   (exit 0 when URL answers 200: a container health check)\n\nServes /ws (a chat room; with ?channel=name, channels), /echo, the demo page at / and the HTTP API at /api/.\nEvery flag can also be set as FANOUT_<NAME> (e.g. FANOUT_MAX_CONNS=5000); flags win.\n\n")
		fs.PrintDefaults()
	}
	if err := setFromEnv(fs); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if !o.presenceEvents {
		o.channels.PresenceQuietChannels = []string{"*"}
	}
	o.flags = fs
	return o, nil
}

// bindServerFlags binds the engine's settings, defaults from its constants.
func bindServerFlags(fs *flag.FlagSet, c *server.Config) {
	fs.Var(listFlag[string]{&c.AllowedOrigins, identity}, "allowed-origins", "comma-separated Origin patterns browsers may connect from (path.Match syntax, e.g. https://*.example.com); others get 403. Empty allows all")
	fs.StringVar(&c.Addr, "addr", server.DefaultAddr, "TCP address to listen on")
	fs.IntVar(&c.Workers, "workers", server.DefaultWorkers(), "size of the read pool (reads, parsing, OnMessage)")
	fs.IntVar(&c.WriteWorkers, "write-workers", server.DefaultWriteWorkers(), "write workers (hub flushes, writable sockets); writes never block, one per core")
	fs.IntVar(&c.Pollers, "pollers", server.DefaultPollers(), "epoll instances per direction")
	fs.IntVar(&c.MaxConns, "max-conns", server.DefaultMaxConns, "maximum open connections (capped by the open-files limit); beyond it 503")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", server.DefaultMaxMessageBytes, "maximum message payload in bytes; larger ones close with 1009")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", server.DefaultSendQueueBytes, "per-connection send queue limit in bytes; past it the client is evicted as a slow consumer")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "time allowed from accept to a complete upgrade request")
	fs.DurationVar(&c.PingInterval, "ping-interval", server.DefaultPingInterval, "ping a connection silent for this long (negative disables)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a connection silent for this long (negative disables)")
	fs.DurationVar(&c.CloseTimeout, "close-timeout", server.DefaultCloseTimeout, "wait this long for the peer's close frame")
	fs.DurationVar(&c.ExpiryWarning, "token-expiry-warning", server.DefaultExpiryWarning, "this long before a connection's token expires, send it {\"type\":\"expiring\",\"in\":secs} to refresh with {\"op\":\"refresh\",\"token\":...} (or, with -proxy-refresh-url, ask the backend to extend the session); negative disables")
	fs.IntVar(&c.ReadBufferBytes, "read-buffer-bytes", server.DefaultReadBufferBytes, "size of the pooled buffer one read fills")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "maximum upgrade request size; larger gets 431")
	fs.IntVar(&c.HubBacklogBytes, "hub-backlog-bytes", server.DefaultHubBacklogBytes, "broadcast bytes one hub shard may hold while its flush catches up; beyond it broadcasts are dropped and counted")
	fs.StringVar(&c.Compression, "compression", server.DefaultCompression, "permessage-deflate with clients that offer it: on (each broadcast compressed once for all) or off")
	fs.IntVar(&c.CompressionMinBytes, "compression-min-bytes", server.DefaultCompressionMinBytes, "send messages shorter than this uncompressed (negative compresses all)")
	fs.IntVar(&c.CompressionLevel, "compression-level", server.DefaultCompressionLevel, "flate level, 1 (fastest) to 9 (smallest)")
	fs.Float64Var(&c.MessageRate, "message-rate", 0, "messages per second one connection may send (token bucket); 0 disables")
	fs.IntVar(&c.MessageBurst, "message-burst", 0, "bucket size for -message-rate (0 means 1)")
	fs.Float64Var(&c.ByteRate, "byte-rate", 0, "payload bytes per second one connection may send; 0 disables")
	fs.IntVar(&c.ByteBurst, "byte-burst", 0, "bucket size for -byte-rate (at least -max-message-bytes)")
	fs.BoolVar(&c.RateLimitClose, "rate-limit-close", false, "close a connection over its rate with 1008 instead of dropping the message")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "concurrent connections per source address; more get 429; 0 disables")
	fs.Float64Var(&c.HandshakeRatePerIP, "handshake-rate-per-ip", 0, "upgrade requests per second per source address; more get 429; 0 disables")
	fs.Float64Var(&c.MaxHandshakeRate, "max-handshake-rate", 0, "new connections per second this node admits (token bucket, burst a tenth of a second's worth; counted at accept, before any TLS work); more get 503 with a Retry-After that books each a second ahead at this rate, so a reconnect storm cannot starve the open connections; 0 disables")
	fs.IntVar(&c.IPv6PrefixBits, "ipv6-prefix", server.DefaultIPv6PrefixBits, "the per-IP limits count an IPv6 client by this prefix length (64, 56, 48; 128 counts each address)")
	fs.Var(listFlag[netip.Prefix]{&c.TrustedProxies, parseProxy}, "trusted-proxies", "comma-separated addresses or CIDRs of the load balancers in front (10.0.0.0/8,192.0.2.7): only their PROXY headers and forwarding headers are believed; per-IP limits, logs and client addresses then use the client's own")
	fs.TextVar(&c.ProxyProtocol, "proxy-protocol", server.ProxyProtocolOff, "PROXY protocol v1/v2 header from -trusted-proxies: off, optional or required (a header from any other peer closes the connection)")
	fs.StringVar(&c.ForwardedHeader, "forwarded-header", server.HeaderXForwardedFor, "header -trusted-proxies append the client's address to: X-Forwarded-For, Forwarded or none")
}

// bindChannelFlags binds the channels' settings, defaults from pubsub's
// constants.
func bindChannelFlags(fs *flag.FlagSet, p *pubsub.Config) {
	bindProxyFlags(fs, &p.Proxy)
	bindWebhookFlags(fs, &p.Webhook)
	fs.IntVar(&p.HistorySize, "history-size", pubsub.DefaultHistorySize, "messages each channel keeps for clients that resubscribe with since=<offset> (negative disables)")
	fs.DurationVar(&p.HistoryTTL, "history-ttl", pubsub.DefaultHistoryTTL, "how long a channel message stays in history")
	fs.Int64Var(&p.HistoryMaxBytes, "history-max-bytes", pubsub.DefaultHistoryMaxBytes, "memory all channels' history may take together (message bytes plus per-message overhead); the oldest messages go first")
	fs.IntVar(&p.MaxChannels, "max-channels", pubsub.DefaultMaxChannels, "channels that may exist at once (with subscribers or history); at most half of them made by publishes alone")
	fs.Float64Var(&p.ChannelCreateRate, "channel-create-rate", pubsub.DefaultChannelCreateRate, "new channels one connection may make per second, and history replays it may ask for, with a burst of -max-channels-per-conn (negative disables)")
	fs.Float64Var(&p.MaxReplayRate, "max-replay-rate", 0, "history replays (subscribes with since) this node serves per second over all connections (token bucket, burst a tenth of a second's worth); beyond it a subscribe waits for its turn off the read workers (its subscribed reply and replay come then; at upgrade the 101 first) while up to 10 s of turns wait, past that it gets an error with a retry-ms hint booked at this rate (503 with Retry-After at upgrade), so resuming clients cannot starve live delivery; 0 disables")
	fs.IntVar(&p.MaxChannelsPerConn, "max-channels-per-conn", pubsub.DefaultMaxChannelsPerConn, "subscriptions one connection may hold")
	fs.Var(listFlag[string]{&p.PrivateChannels, identity}, "private-channels", "comma-separated channel patterns (path.Match, e.g. 'private:*') a client may subscribe to only with a channel token ({\"op\":\"subscribe\",...,\"token\":<jwt with channel and sub claims>}) or the -proxy-subscribe-url backend's consent")
	fs.IntVar(&p.MaxConnsPerUser, "max-conns-per-user", 0, "connections one user (token or connect hook sub) may hold on this node, per node not per cluster: the next upgrade is refused with 429 (fanout_user_conns_refused_total); anonymous ones are not counted; 0: no cap")
	fs.Var(listFlag[string]{&p.PresenceChannels, identity}, "presence-channels", "comma-separated channel patterns (path.Match, e.g. 'room:*') whose members every node tracks: the presence and presence_stats ops, GET /api/presence, join and leave events")
	fs.Var(listFlag[string]{&p.PresenceQuietChannels, identity}, "presence-quiet-channels", "comma-separated patterns of presence channels whose subscribers get no join and leave events (large channels)")
	fs.IntVar(&p.PresenceMaxMembers, "presence-max-members", pubsub.DefaultPresenceMaxMembers, "members a presence channel tracks; later joins are neither tracked nor announced, and the presence answer says truncated")
	fs.DurationVar(&p.PresenceExpiry, "presence-expiry", pubsub.DefaultPresenceExpiry, "how long nodes keep a silent node's presence members (it died); each node repeats its members every third of it")
}

// bindWebhookFlags binds the lifecycle webhooks (README "Webhooks").
func bindWebhookFlags(fs *flag.FlagSet, w *pubsub.Webhook) {
	fs.StringVar(&w.URL, "webhook-url", "", "POST batches of lifecycle events (channel_occupied, channel_vacated, member_added, member_removed) to this backend URL; empty: none")
	fs.StringVar(&w.Secret, "webhook-secret", "", "sign each webhook body with this secret: X-Fanout-Signature: sha256=<hex HMAC-SHA256 of the body>; required with -webhook-url")
	fs.DurationVar(&w.Debounce, "webhook-debounce", pubsub.DefaultWebhookDebounce, "a channel_vacated or member_removed waits this long; the channel or member back within it cancels both (a reconnect)")
	fs.DurationVar(&w.BatchWindow, "webhook-batch-window", pubsub.DefaultWebhookBatchWindow, "a webhook batch gathers events this long after its first")
	fs.IntVar(&w.MaxBatch, "webhook-max-batch", pubsub.DefaultWebhookMaxBatch, "events per webhook POST at most")
	fs.IntVar(&w.Queue, "webhook-queue", pubsub.DefaultWebhookQueue, "events waiting to be posted at most; beyond it they are dropped and counted (fanout_webhook_events_dropped_total)")
	fs.IntVar(&w.Retries, "webhook-retries", pubsub.DefaultWebhookRetries, "a batch that fails (error, timeout, 408, 429, 5xx) is posted again this many times, backing off from 200 ms doubling, then dropped and counted; negative: never")
	fs.DurationVar(&w.Timeout, "webhook-timeout", pubsub.DefaultProxyTimeout, "each webhook POST's deadline")
}

// bindProxyFlags binds the backend hooks (README "Backend hooks").
func bindProxyFlags(fs *flag.FlagSet, p *pubsub.Proxy) {
	fs.StringVar(&p.ConnectURL, "proxy-connect-url", "", "POST each upgrade request to this backend URL, which admits it (user, info, expire_at, channels) or refuses it with its HTTP status; empty: no hook")
	fs.StringVar(&p.SubscribeURL, "proxy-subscribe-url", "", "POST each client subscribe to this backend URL, which allows or denies it; empty: no hook")
	fs.StringVar(&p.PublishURL, "proxy-publish-url", "", "POST each client publish to this backend URL, which allows, denies or rewrites it; empty: no hook")
	fs.StringVar(&p.RPCURL, "proxy-rpc-url", "", "POST each {\"op\":\"rpc\"} to this backend URL, whose result's data is the answer; empty: rpc refused")
	fs.StringVar(&p.RefreshURL, "proxy-refresh-url", "", "POST to this backend URL when a connection's session nears its expiry; its result's expire_at extends it; empty: the client refreshes its token")
	fs.Var(listFlag[string]{&p.Headers, identity}, "proxy-headers", "comma-separated upgrade request headers sent with every hook, e.g. Cookie,Authorization")
	fs.DurationVar(&p.Timeout, "proxy-timeout", pubsub.DefaultProxyTimeout, "each hook request's deadline; past it the request is refused as backend unavailable")
	fs.IntVar(&p.MaxInflight, "proxy-max-inflight", pubsub.DefaultProxyMaxInflight, "hook requests in flight on this node at most; beyond them a request is refused at once (backend busy)")
}

// setFromEnv sets every flag named in the environment as FANOUT_<NAME>
// (-max-conns from FANOUT_MAX_CONNS); the command line, parsed after,
// wins.
func setFromEnv(fs *flag.FlagSet) error {
	var errs error
	fs.VisitAll(func(f *flag.Flag) {
		key := "FANOUT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := f.Value.Set(v); err != nil {
				errs = errors.Join(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	return errs
}

// listFlag is a comma-separated flag; each entry is parsed into the list,
// which Get returns for -print-config. Set, even to "", leaves a non-nil
// list: an empty flag means none, an unset one nil (the default).
type listFlag[T any] struct {
	list  *[]T
	parse func(string) (T, error)
}

func (l listFlag[T]) Set(v string) error {
	*l.list = []T{}
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		x, err := l.parse(p)
		if err != nil {
			return err
		}
		*l.list = append(*l.list, x)
	}
	return nil
}

func (l listFlag[T]) String() string {
	if l.list == nil {
		return ""
	}
	parts := make([]string, len(*l.list))
	for i, x := range *l.list {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}

func (l listFlag[T]) Get() any { return *l.list }

func identity(s string) (string, error) { return s, nil }

// parseProxy reads a trusted proxy: an address or a CIDR.
func parseProxy(p string) (netip.Prefix, error) {
	if !strings.Contains(p, "/") {
		a, err := netip.ParseAddr(p)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(p)
	return pfx.Masked(), err
}

// printConfig writes the effective configuration as JSON: every flag's
// value after the environment and the command line, by its name in
// snake_case. Secrets show only whether they are set, and the broker URL
// hides its password.
func printConfig(w io.Writer, fs *flag.FlagSet) error {
	m := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		var v any = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			v = g.Get()
		}
		switch {
		case f.Name == "print-config" || f.Name == "check-config": // what to do, not how
			return
		case slices.Contains(secretFlags, f.Name):
			key, v = key+"_set", f.Value.String() != ""
		case f.Name == "broker":
			v = redact.URL(f.Value.String())
		}
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		m[key] = v
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}
