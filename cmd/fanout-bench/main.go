// Command fanout-bench drives a WebSocket server with many connections and
// reports memory per connection or broadcast latency.
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
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fanout-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bench.Config
	var jsonPath, label string
	fs := flag.NewFlagSet("fanout-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "target WebSocket URL (a broadcast room for -scenario broadcast)")
	fs.StringVar(&cfg.Scenario, "scenario", "broadcast", "idle or broadcast")
	fs.IntVar(&cfg.Conns, "conns", 1000, "subscriber connections to hold (one process holds ~19,900 here)")
	fs.IntVar(&cfg.DialRate, "rate", 5000, "connections opened per second during the ramp")
	fs.IntVar(&cfg.SourceIPs, "source-ips", 50, "spread source addresses over 127.0.0.2 .. 127.0.0.(1+N); 0 lets the kernel pick")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement time (the run always stops by itself)")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "wait after the ramp before measuring")
	fs.Float64Var(&cfg.Rate, "msg-rate", 5, "broadcast messages per second")
	fs.IntVar(&cfg.Size, "size", 64, "broadcast payload bytes (>= 16: send time and sequence)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "sample this process's RSS and CPU from /proc")
	fs.StringVar(&jsonPath, "json", "", "write the result as JSON to this file and print no progress")
	fs.StringVar(&label, "label", "", "name of the server in the Markdown row")
	if err := fs.Parse(args); err != nil {
		return err
	}
	progress := stderr
	if jsonPath != "" {
		progress = nil
	}
	res, err := bench.Run(ctx, cfg, progress)
	if err != nil {
		return err
	}
	if jsonPath != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, res.MarkdownRow(label))
	return nil
}
