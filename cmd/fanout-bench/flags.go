package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-ws/fanout/bench"
)

// list is a flag holding comma-separated values.
type list []string

// headerList collects a repeated flag.
type headerList []string

func (l *headerList) String() string     { return strings.Join(*l, "; ") }
func (l *headerList) Set(v string) error { *l = append(*l, v); return nil }

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	*l = nil
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// cpuList is a flag holding a CPU list as taskset -c takes it.
type cpuList []int

func (c *cpuList) String() string {
	s := make([]string, len(*c))
	for i, v := range *c {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (c *cpuList) Set(v string) (err error) {
	*c, err = bench.ParseCPUs(v)
	return err
}

// options is the command line.
type options struct {
	cfg                bench.Config
	urls, sources      list
	pids, brokerPIDs   list
	jsonPath, label    string
	vsLabel, serverCmd string
	vsCmd              string
	rounds             int
	quiet, ceiling     bool
	pinClient          cpuList
	search             bench.CeilingSearch
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{urls: list{"ws://127.0.0.1:8080/ws"}}
	fs := flag.NewFlagSet("fanout-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.scenarioFlags(fs)
	o.serverFlags(fs)
	o.outputFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fanout-bench [flags]\n\nDrives WebSocket servers on loopback: a progress line every second on stderr, a Markdown table on stdout.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return o, o.finish()
}

func (o *options) scenarioFlags(fs *flag.FlagSet) {
	c := &o.cfg
	fs.Var(&o.urls, "url", "target WebSocket URL(s), comma-separated; connections are spread over them (a broadcast room for broadcast/slow, /echo for echo)")
	fs.StringVar(&c.Scenario, "scenario", bench.ScenarioBroadcast, "idle, broadcast, echo, churn or slow")
	fs.IntVar(&c.Conns, "conns", 1000, "connections to hold (subscribers, echo clients, or concurrent churners); above one process's open-files limit, worker processes are started")
	fs.IntVar(&c.DialRate, "rate", 5000, "new connections per second during the ramp")
	fs.IntVar(&c.SourceIPs, "source-ips", 50, "spread source addresses over 127.0.0.2 .. 127.0.0.(1+N); 0 lets the kernel pick")
	fs.Var(&o.sources, "source-addrs", "spread source addresses over these IPs instead (e.g. a real interface's), comma-separated")
	fs.IntVar(&c.Publishers, "publishers", 0, "broadcast/slow: publisher connections, spread over the URLs, each at -msg-rate (default: one per URL); with -channels, publisher p owns channels p, p+N, p+2N, ... and paces them all")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measurement time; every run stops by itself")
	fs.DurationVar(&c.Settle, "settle", 2*time.Second, "wait after the ramp before measuring")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "time allowed for the last messages after publishing stops")
	fs.Float64Var(&c.Rate, "msg-rate", 5, "broadcast/slow: messages per second per publisher; with -channels, per channel (so publishes/s = msg-rate x channels and deliveries/s = msg-rate x subscribers, whatever the number of channels); echo: messages per second in all")
	fs.BoolVar(&c.ClosedLoop, "closed-loop", false, "echo: each connection sends its next message when the reply to its last arrives (-msg-rate unused)")
	fs.IntVar(&c.Size, "size", 64, "message payload bytes (>= 16: send time and sequence); with -channels, bytes of the published JSON data object (>= 48)")
	fs.IntVar(&c.Channels, "channels", 0, "broadcast: spread subscribers over K channels of the channels protocol (subscriber i connects to <url i mod U>?channel=<prefix><i mod K>; with U URLs, servers joined by a broker, K must be a multiple of U, so channel c's subscribers are all on URL c mod U); each message carries its channel's sequence and send time; 0: the plain /ws room")
	fs.BoolVar(&c.Joined, "joined", false, "with -channels: the URLs are nodes joined by a broker, so any channel may have subscribers on every URL (subscriber i on URL i mod U, channel i mod K, K any); e.g. -channels 1 is one channel across every node")
	fs.StringVar(&c.ChannelPrefix, "channel-prefix", "c", "with -channels: channel names are this prefix and the channel's number")
	fs.StringVar(&c.PublishURL, "publish-url", "", "with -channels: publish through this HTTP API endpoint (e.g. http://127.0.0.1:8080/api/publish), one request at a time per publisher; empty: {\"op\":\"publish\"} messages over a WebSocket to -url")
	fs.StringVar(&c.APIKey, "api-key", "", "with -publish-url: API key, sent as \"Authorization: Bearer <key>\" (default: $FANOUT_API_KEY); never written to the JSON")
	fs.Var((*headerList)(&c.Headers), "header", "add this \"Name: value\" line to every upgrade request, e.g. 'Cookie: session=…' for a connect hook; repeat for more; never written to the JSON")
	fs.IntVar(&c.Batch, "batch", 1, "with -publish-url: messages per request, sent as one JSON array (the API's batch form) for the publisher's next channels in turn; 1 sends one JSON object per request")
	fs.Float64Var(&c.SlowFrac, "slow-frac", 0.01, "slow: fraction of subscribers that never read")
	fs.IntVar(&c.Stalled, "stalled", 1000, "slow: clients stuck mid-handshake and mid-frame (half each)")
	fs.IntVar(&c.Churners, "churners", 0, "broadcast: also run this many connect/close loops (TCP, TLS for wss, upgrade, close) while publishing, on top of -conns: a reconnect storm; the JSON's storm holds handshakes/s and their latency, and p99 is the established subscribers' during it")
	fs.IntVar(&c.PerProcess, "per-process", 0, "connections per load-generator process (default: open-files limit - 500)")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "hard stop for the whole run")
	fs.StringVar(&c.CAFile, "ca-file", "", "wss: PEM file of the CA to trust")
	fs.BoolVar(&c.Insecure, "insecure", false, "wss: skip certificate verification (loopback benchmarks only)")
	fs.BoolVar(&c.Deflate, "deflate", false, "offer permessage-deflate as browsers do and inflate compressed frames; the JSON's wire_bytes_per_delivery is bytes read per delivery")
	fs.BoolVar(&c.JSONPayload, "json-payload", false, "broadcast: fill the payload after its 16-byte stamp with order-book JSON (compresses about 3x) instead of zeros")
	fs.BoolVar(&o.ceiling, "ceiling", false, "broadcast: raise -msg-rate by -ceiling-factor phase by phase until the server stops keeping up (anything missing, lost, reordered or disconnected after the drain, publishers held back, or p99 over -ceiling-p99), bisect -ceiling-refine times, and report the highest rate kept up")
	fs.Float64Var(&o.search.Factor, "ceiling-factor", 1.5, "-ceiling: rate multiplier between phases")
	fs.DurationVar(&o.search.MaxP99, "ceiling-p99", time.Second, "-ceiling: highest p99 that counts as keeping up")
	fs.IntVar(&o.search.Refine, "ceiling-refine", 2, "-ceiling: bisection phases after the first rate missed (-1: none)")
	fs.IntVar(&o.search.MaxPhases, "ceiling-max-phases", 12, "-ceiling: phases at most")
}

func (o *options) serverFlags(fs *flag.FlagSet) {
	c := &o.cfg
	fs.Var(&o.pids, "server-pid", "sample these server processes' RSS and CPU from /proc (comma-separated)")
	fs.Var(&o.brokerPIDs, "broker-pid", "sample these processes' CPU and RSS apart from the servers' over the same window, e.g. a redis-server broker (comma-separated)")
	fs.StringVar(&o.serverCmd, "server-cmd", "", "start this server (argv, no shell) before the run and stop it after; its PID is sampled; its output goes to -server-log")
	fs.StringVar(&c.ServerLog, "server-log", "", "with -server-cmd: append the server's stdout and stderr to this file (default: fanout-bench-<pid>-server.log in the temp dir)")
	fs.StringVar(&o.vsCmd, "vs-cmd", "", "with -server-cmd: a second server, run alternately; prints ratios vs-cmd / server-cmd")
	fs.IntVar(&o.rounds, "rounds", 2, "with -vs-cmd: alternating rounds")
	fs.Var((*cpuList)(&c.PinServer), "pin-server", "restrict the server to these CPUs (e.g. 0 or 0-1): -server-cmd starts it so (a Go server's GOMAXPROCS follows), -server-pid processes are pinned thread by thread, like taskset -a -p")
	fs.Var(&o.pinClient, "pin-client", "restrict this generator and its worker processes to these CPUs (e.g. 1), GOMAXPROCS sized to them")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "the server's Prometheus metrics (Fanout: http://<-admin-addr>/metrics): write syscalls, frames and (over wss, when the server counts them) TLS records over the measured window give writes per delivery, frames per write and records per write")
}

func (o *options) outputFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.jsonPath, "json", "", "write every figure, the per-second series, the command line and the environment as one JSON document to this file (snake_case keys, units in the names, no secrets); bench/plot draws such files as charts")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&o.label, "label", "", "server name in the table (default: the -server-cmd program's name)")
	fs.StringVar(&o.vsLabel, "vs-label", "", "name of the -vs-cmd server (default: its program's name)")
}

// finish checks and converts what the flags alone cannot.
func (o *options) finish() error {
	o.cfg.URLs, o.cfg.SourceAddrs = o.urls, o.sources
	if o.cfg.APIKey == "" {
		o.cfg.APIKey = os.Getenv("FANOUT_API_KEY")
	}
	var err error
	if o.cfg.ServerPIDs, err = pidList("-server-pid", o.pids); err != nil {
		return err
	}
	if o.cfg.BrokerPIDs, err = pidList("-broker-pid", o.brokerPIDs); err != nil {
		return err
	}
	if o.vsCmd != "" && o.serverCmd == "" {
		return errors.New("-vs-cmd needs -server-cmd")
	}
	if o.ceiling && o.vsCmd != "" {
		return errors.New("-ceiling searches one server: run it once per server")
	}
	if o.cfg.ServerLog == "" && o.serverCmd != "" {
		o.cfg.ServerLog = filepath.Join(os.TempDir(), fmt.Sprintf("fanout-bench-%d-server.log", os.Getpid()))
	}
	return nil
}

func pidList(flagName string, l list) ([]int, error) {
	var pids []int
	for _, p := range l {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flagName, p, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
