// Command fanout-bench is Fanout's load generator: it holds many WebSocket
// connections without a goroutine per connection, drives a scenario (idle,
// broadcast, echo, churn, slow) and reports memory per connection, latency
// percentiles and throughput. Past what one process can hold (~19,900
// sockets under a 20,000 open-files cap) it starts worker processes of
// itself and merges their results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if bench.IsWorker() {
		err = bench.RunWorker(ctx, os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fanout-bench:", err)
		os.Exit(1)
	}
}

// list is a flag holding comma-separated values.
type list []string

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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg              bench.Config
		urls             = list{"ws://127.0.0.1:8080/ws"}
		pids, brokerPIDs list
		sources          list
		jsonPath, label  string
		vsLabel          string
		serverCmd, vsCmd string
		rounds           int
	)
	fs := flag.NewFlagSet("fanout-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&urls, "url", "target WebSocket URL(s), comma-separated; connections are spread over them (a broadcast room for broadcast/slow, /echo for echo)")
	fs.StringVar(&cfg.Scenario, "scenario", bench.ScenarioBroadcast, "idle, broadcast, echo, churn or slow")
	fs.IntVar(&cfg.Conns, "conns", 1000, "connections to hold (subscribers, echo clients, or concurrent churners); above one process's open-files limit, worker processes are started")
	fs.IntVar(&cfg.DialRate, "rate", 5000, "new connections per second during the ramp")
	fs.IntVar(&cfg.SourceIPs, "source-ips", 50, "spread source addresses over 127.0.0.2 .. 127.0.0.(1+N); 0 lets the kernel pick")
	fs.Var(&sources, "source-addrs", "spread source addresses over these IPs instead (e.g. a real interface's), comma-separated")
	fs.IntVar(&cfg.Publishers, "publishers", 0, "broadcast/slow: publisher connections, spread over the URLs, each at -msg-rate (default: one per URL); with -channels, publisher p owns channels p, p+N, p+2N, ... and paces them all")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement time; every run stops by itself")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "wait after the ramp before measuring")
	fs.DurationVar(&cfg.Drain, "drain", 3*time.Second, "time allowed for the last messages after publishing stops")
	fs.Float64Var(&cfg.Rate, "msg-rate", 5, "broadcast/slow: messages per second per publisher; with -channels, per channel (so publishes/s = msg-rate x channels and deliveries/s = msg-rate x subscribers, whatever the number of channels); echo: messages per second in all")
	fs.IntVar(&cfg.Size, "size", 64, "message payload bytes (>= 16: send time and sequence); with -channels, bytes of the published JSON data object (>= 48)")
	fs.IntVar(&cfg.Channels, "channels", 0, "broadcast: spread subscribers over K channels of the channels protocol (subscriber i connects to <url>?channel=<prefix><i mod K>); each message carries its channel's sequence and send time; 0: the plain /ws room")
	fs.StringVar(&cfg.ChannelPrefix, "channel-prefix", "c", "with -channels: channel names are this prefix and the channel's number")
	fs.StringVar(&cfg.PublishURL, "publish-url", "", "with -channels: publish through this HTTP API endpoint (e.g. http://127.0.0.1:8080/api/publish), one request at a time per publisher; empty: {\"op\":\"publish\"} messages over a WebSocket to -url")
	fs.StringVar(&cfg.APIKey, "api-key", "", "with -publish-url: API key, sent as \"Authorization: Bearer <key>\" (default: $FANOUT_API_KEY)")
	fs.IntVar(&cfg.Batch, "batch", 1, "with -publish-url: messages per request, sent as one JSON array (the API's batch form) for the publisher's next channels in turn; 1 sends one JSON object per request")
	fs.Float64Var(&cfg.SlowFrac, "slow-frac", 0.01, "slow: fraction of subscribers that never read")
	fs.IntVar(&cfg.Stalled, "stalled", 1000, "slow: clients stuck mid-handshake and mid-frame (half each)")
	fs.Var(&pids, "server-pid", "sample these server processes' RSS and CPU from /proc (comma-separated)")
	fs.Var(&brokerPIDs, "broker-pid", "sample these processes' CPU and RSS apart from the servers' over the same window, e.g. a redis-server broker (comma-separated)")
	fs.IntVar(&cfg.PerProcess, "per-process", 0, "connections per load-generator process (default: open-files limit - 500)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "hard stop for the whole run")
	fs.StringVar(&cfg.CAFile, "ca-file", "", "wss: PEM file of the CA to trust")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "wss: skip certificate verification (loopback benchmarks only)")
	fs.BoolVar(&cfg.Deflate, "deflate", false, "offer permessage-deflate as browsers do and inflate compressed frames; the JSON output's WireBytes is bytes read per delivery")
	fs.BoolVar(&cfg.JSONPayload, "json-payload", false, "broadcast: fill the payload after its 16-byte stamp with order-book JSON (compresses about 3x) instead of zeros")
	fs.StringVar(&serverCmd, "server-cmd", "", "start this server (argv, no shell) before the run and stop it after; its PID is sampled")
	fs.StringVar(&vsCmd, "vs-cmd", "", "with -server-cmd: a second server, run alternately; prints ratios vs-cmd / server-cmd")
	fs.IntVar(&rounds, "rounds", 2, "with -vs-cmd: alternating rounds")
	fs.StringVar(&jsonPath, "json", "", "write every figure and the configuration as one JSON document to this file; no progress output")
	fs.StringVar(&label, "label", "", "server name in the Markdown row (default: the -server-cmd program's name)")
	fs.StringVar(&vsLabel, "vs-label", "", "name of the -vs-cmd server (default: its program's name)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fanout-bench [flags]\n\nDrives WebSocket servers on loopback and prints one Markdown row per run.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.URLs = urls
	if cfg.APIKey == "" {
		cfg.APIKey = os.Getenv("FANOUT_API_KEY")
	}
	cfg.SourceAddrs = sources
	for _, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-server-pid %q: %w", p, err)
		}
		cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
	}
	for _, p := range brokerPIDs {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-broker-pid %q: %w", p, err)
		}
		cfg.BrokerPIDs = append(cfg.BrokerPIDs, pid)
	}
	progress := bench.Progress(jsonPath != "")
	var doc any
	switch {
	case vsCmd != "":
		if serverCmd == "" {
			return errors.New("-vs-cmd needs -server-cmd")
		}
		c, err := bench.Compare(ctx, cfg, serverCmd, vsCmd, rounds, progress)
		if err != nil {
			return err
		}
		a, b := labelOr(label, serverCmd), labelOr(vsLabel, vsCmd)
		for i := range c.RunsA {
			fmt.Fprintln(stdout, c.RunsA[i].MarkdownRow(a))
			fmt.Fprintln(stdout, c.RunsB[i].MarkdownRow(b))
		}
		fmt.Fprintf(stdout, "ratios (%s / %s, medians): p99 %.2fx, p50 %.2fx, RSS/conn %.2fx, throughput %.2fx\n",
			b, a, c.P99Ratio, c.P50Ratio, c.RSSRatio, c.ThroughputRatio)
		doc = c
	case serverCmd != "":
		r, err := bench.RunServer(ctx, cfg, serverCmd, progress)
		if err != nil {
			return err
		}
		printResult(stdout, r, labelOr(label, serverCmd))
		doc = r
	default:
		r, err := bench.Run(ctx, cfg, progress)
		if err != nil {
			return err
		}
		printResult(stdout, r, label)
		doc = r
	}
	if jsonPath != "" {
		b, _ := json.MarshalIndent(doc, "", "  ")
		return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
	}
	return nil
}

// labelOr names a server: label if set, else its command's program name
// (the script's for interpreters, as in "node server.js").
// printResult prints r's row, and for the slow scenario the clean run's
// row and the ratio of their p99.
func printResult(w io.Writer, r bench.Result, label string) {
	fmt.Fprintln(w, r.MarkdownRow(label))
	if r.Config.Channels > 0 {
		fmt.Fprintf(w, "channels: published %.0f/s of %.0f/s asked, %d publish errors, %d misrouted, %d malformed, %d lost, %d reordered, %d disconnected",
			r.PublishedPS, r.TargetPS, r.PublishErrors, r.Misrouted, r.Malformed, r.Lost, r.Reordered, r.Disconnected)
		if r.Requests > 0 {
			fmt.Fprintf(w, "; API: %d requests, round trip p50 %.2f ms p99 %.2f ms max %.2f ms, server says delivered %d",
				r.Requests, float64(r.APIP50us)/1000, float64(r.APIP99us)/1000, float64(r.APIMaxUS)/1000, r.APIDelivered)
		}
		fmt.Fprintf(w, "; CPU (cores): server %.2f, generator %.2f, whole machine %.2f", r.ServerCPU, r.GeneratorCPU, r.MachineCPU)
		if len(r.Config.BrokerPIDs) > 0 {
			fmt.Fprintf(w, ", broker %.3f", r.BrokerCPU)
		}
		fmt.Fprintln(w)
		if r.PublishedPS < 0.95*r.TargetPS {
			fmt.Fprintf(w, "warning: publishers fell behind (%.0f%% of the asked rate); add -publishers or -batch\n", 100*r.PublishedPS/r.TargetPS)
		}
	}
	if r.Clean != nil {
		fmt.Fprintln(w, r.Clean.MarkdownRow(label+" (clean)"))
		fmt.Fprintf(w, "healthy subscribers' p99 with slow and stalled clients: %.2fx the clean run\n", float64(r.P99us)/float64(max(1, r.Clean.P99us)))
	}
}

func labelOr(label, cmd string) string {
	if label != "" {
		return label
	}
	f := strings.Fields(cmd)
	switch {
	case len(f) == 0:
		return ""
	case len(f) > 1 && (filepath.Base(f[0]) == "node" || filepath.Base(f[0]) == "python3"):
		return filepath.Base(f[0]) + " " + filepath.Base(f[1])
	}
	return filepath.Base(f[0])
}
