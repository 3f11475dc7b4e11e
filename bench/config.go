package bench

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"
)

// Scenarios Run knows.
const (
	ScenarioIdle      = "idle"      // hold connections, sample server memory
	ScenarioBroadcast = "broadcast" // publishers send, every subscriber checks order and latency
	ScenarioEcho      = "echo"      // each connection sends, measures the round trip
	ScenarioChurn     = "churn"     // connect / disconnect storms: handshakes per second and latency
	ScenarioSlow      = "slow"      // broadcast with non-reading and stalled clients, against a clean run
)

// Config describes one run. The zero value of each optional field means
// the default named beside it.
type Config struct {
	URLs          []string      `json:"urls"`                     // targets; connections are spread over them round-robin
	Scenario      string        `json:"scenario"`                 // one of the Scenario constants
	Conns         int           `json:"conns"`                    // connections to hold (subscribers, echo clients, or concurrent churners)
	DialRate      int           `json:"dial_per_s"`               // new connections per second during the ramp (default 5000)
	SourceIPs     int           `json:"source_ips"`               // spread source addresses over 127.0.0.2 .. 127.0.0.(1+SourceIPs); 0: kernel's choice
	SourceAddrs   []string      `json:"source_addrs,omitempty"`   // source addresses to spread over instead (e.g. a real interface's); overrides SourceIPs
	Duration      time.Duration `json:"duration_ns"`              // measurement time (default 10s)
	Settle        time.Duration `json:"settle_ns"`                // wait after the ramp before measuring
	Drain         time.Duration `json:"drain_ns"`                 // broadcast/echo: time allowed for the last messages (default 3s)
	Rate          float64       `json:"msg_per_s"`                // broadcast: messages/s per publisher, or per channel when Channels > 0; echo: messages/s in all (unless ClosedLoop)
	ClosedLoop    bool          `json:"closed_loop,omitempty"`    // echo: each connection sends its next message when the reply to the last arrives; Rate is unused
	Publishers    int           `json:"publishers"`               // broadcast: publisher connections, spread over URLs (default: one per URL)
	Size          int           `json:"size_bytes"`               // payload bytes, at least 16 (send time and sequence); with Channels, the published data's bytes (at least MinChannelData)
	Channels      int           `json:"channels,omitempty"`       // broadcast: spread subscribers over this many channels (subscriber i on ChannelPrefix + i mod Channels); 0: the plain /ws room
	ChannelPrefix string        `json:"channel_prefix,omitempty"` // channel names are this prefix and the channel's number (default "c")
	Joined        bool          `json:"joined,omitempty"`         // with Channels: the URLs are nodes joined by a broker, so a channel's subscribers may be on every URL (Channels need not be a multiple of the URLs)
	PublishURL    string        `json:"publish_url,omitempty"`    // with Channels: publish through this HTTP API endpoint (POST /api/publish) instead of WebSocket publish messages
	APIKey        string        `json:"-"`                        // with PublishURL: sent as "Authorization: Bearer <key>"; never written out (workers do not publish)
	Headers       []string      `json:"-"`                        // "Name: value" lines added to every upgrade request (a session cookie for a connect hook, say); never written out (workers get them apart)
	Batch         int           `json:"batch,omitempty"`          // with PublishURL: messages per request, sent as one JSON array (default 1: one object per request)
	SlowFrac      float64       `json:"slow_frac,omitempty"`      // slow: fraction of subscribers that never read (default 0.01)
	Stalled       int           `json:"stalled,omitempty"`        // slow: clients stuck mid-handshake plus mid-frame (default 1000)
	Churners      int           `json:"churners,omitempty"`       // broadcast: connections that also open and close in a loop while publishing (a reconnect storm: Result.Storm), on top of Conns
	ServerPIDs    []int         `json:"server_pids,omitempty"`    // sample these processes' RSS and CPU from /proc
	BrokerPIDs    []int         `json:"broker_pids,omitempty"`    // sample these processes' CPU and RSS too, apart from the servers' (a Redis broker)
	PinServer     []int         `json:"pin_server,omitempty"`     // CPUs to restrict the servers to (RunServer starts them so; ServerPIDs are pinned by Run); nil: unpinned
	MetricsURL    string        `json:"metrics_url,omitempty"`    // the server's Prometheus /metrics: write syscalls and frames are read from it before and after measuring
	PerProcess    int           `json:"per_process,omitempty"`    // connections one process may hold before Run starts workers (default: open-files limit - 500)
	Timeout       time.Duration `json:"timeout_ns"`               // hard stop for the whole run (default 10 minutes)
	CAFile        string        `json:"ca_file,omitempty"`        // wss: PEM file of the CA to trust
	Insecure      bool          `json:"insecure,omitempty"`       // wss: skip certificate verification (loopback benchmarks only)
	Deflate       bool          `json:"deflate,omitempty"`        // offer permessage-deflate (no context takeover) and inflate compressed frames
	JSONPayload   bool          `json:"json_payload,omitempty"`   // broadcast: the payload after its 16-byte stamp is JSON text (realistic to compress), not zeros
	ServerLog     string        `json:"server_log,omitempty"`     // RunServer: the server's stdout and stderr are appended to this file (empty: discarded)
}

// maxDialing bounds the handshakes in flight over the whole ramp.
const maxDialing = 256

// dialShare is the part of the ramp that a member dialing n of the Conns
// connections takes: its rate (DialRate is the whole ramp's) and the
// handshakes it may have in flight (maxDialing is the whole ramp's, at
// least 4 each). Each of 52 workers dialed at the full rate with 256 in
// flight before: at 1M the 13,000 handshakes queued on 2 cores waited
// past the server's 5 s handshake timeout.
func (c Config) dialShare(n int) (rate, inFlight int) {
	share := float64(n) / float64(max(1, c.Conns))
	return max(1, int(math.Ceil(float64(c.DialRate)*share))), max(4, int(math.Ceil(maxDialing*share)))
}

// churnShare is how many of the Churners go with the n connections from
// first (members share them as they share Conns).
func (c Config) churnShare(first, n int) int {
	return c.Churners*(first+n)/c.Conns - c.Churners*first/c.Conns
}

func (c Config) withDefaults() Config {
	if c.DialRate <= 0 {
		c.DialRate = 5000
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 3 * time.Second
	}
	if c.Publishers <= 0 {
		c.Publishers = len(c.URLs)
	}
	if c.ChannelPrefix == "" {
		c.ChannelPrefix = "c"
	}
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.SlowFrac == 0 {
		c.SlowFrac = 0.01
	}
	if c.Stalled == 0 {
		c.Stalled = 1000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	return c
}

// Validate checks the fields after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("bench: no target URL"))
	}
	switch c.Scenario {
	case ScenarioIdle, ScenarioBroadcast, ScenarioEcho, ScenarioChurn, ScenarioSlow:
	default:
		errs = append(errs, fmt.Errorf("bench: unknown scenario %q", c.Scenario))
	}
	if c.Conns < 1 {
		errs = append(errs, fmt.Errorf("bench: Conns (%d) must be at least 1", c.Conns))
	}
	if c.Size < headerBytes && c.Channels == 0 {
		errs = append(errs, fmt.Errorf("bench: Size (%d) must be at least %d to carry the send time and sequence", c.Size, headerBytes))
	}
	if (c.Scenario == ScenarioBroadcast || c.Scenario == ScenarioEcho || c.Scenario == ScenarioSlow) && c.Rate <= 0 && !c.ClosedLoop {
		errs = append(errs, fmt.Errorf("bench: Rate (%v) must be positive for %s", c.Rate, c.Scenario))
	}
	for _, a := range c.SourceAddrs {
		if net.ParseIP(a) == nil {
			errs = append(errs, fmt.Errorf("bench: source address %q is not an IP", a))
		}
	}
	for _, h := range c.Headers {
		if name, value, ok := strings.Cut(h, ":"); !ok || !validHeaderName(name) || strings.ContainsAny(value, "\r\n") {
			errs = append(errs, fmt.Errorf("bench: header %q is not \"Name: value\"", h))
		}
	}
	if c.Churners < 0 || (c.Churners > 0 && c.Scenario != ScenarioBroadcast) {
		errs = append(errs, fmt.Errorf("bench: Churners (%d) is for the broadcast scenario (got %s)", c.Churners, c.Scenario))
	}
	if c.ClosedLoop && c.Scenario != ScenarioEcho {
		errs = append(errs, fmt.Errorf("bench: ClosedLoop is for the echo scenario (got %s)", c.Scenario))
	}
	errs = append(errs, c.validateChannels()...)
	if c.SlowFrac < 0 || c.SlowFrac >= 1 {
		errs = append(errs, fmt.Errorf("bench: SlowFrac (%v) must be in [0, 1)", c.SlowFrac))
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 5.1:
// a token).
func validHeaderName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
	})
}
