// Command fanout-bench is Fanout's load generator: it holds many WebSocket
// connections without a goroutine per connection, drives a scenario (idle,
// broadcast, echo, churn, slow) and reports memory per connection, latency
// percentiles and throughput. Past what one process can hold (~19,900
// sockets under a 20,000 open-files cap) it starts worker processes of
// itself and merges their results.
//
// It prints a progress line every second on stderr (-quiet silences it)
// and a Markdown table with its header on stdout; -json writes every
// figure, the per-second series, the command line and the environment;
// bench/plot draws those documents as charts. -pin-server and -pin-client
// restrict the server and the generator to CPUs (sched_setaffinity, as
// taskset does); -ceiling raises the publish rate phase by phase until the
// server stops keeping up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

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

// document is what -json writes.
type document struct {
	Label       string            `json:"label"`              // the server's name in tables and plots
	VsLabel     string            `json:"vs_label,omitempty"` // with -vs-cmd, the second server's
	CommandLine []string          `json:"command_line"`       // secrets redacted
	Environment environment       `json:"environment"`
	Result      *bench.Result     `json:"result,omitempty"`
	Comparison  *bench.Comparison `json:"comparison,omitempty"`
	Ceiling     *bench.Ceiling    `json:"ceiling,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if len(o.pinClient) > 0 {
		if err := bench.PinSelf(o.pinClient); err != nil {
			return err
		}
	}
	var progress io.Writer
	if !o.quiet {
		progress = stderr
		if o.serverCmd != "" {
			fmt.Fprintf(stderr, "server output: %s\n", o.cfg.ServerLog)
		}
	}
	doc := document{Label: labelOr(o.label, o.serverCmd), CommandLine: redactArgs(append([]string{"fanout-bench"}, args...)),
		Environment: newEnvironment(o)}
	if o.vsCmd != "" {
		doc.VsLabel = labelOr(o.vsLabel, o.vsCmd)
	}
	if err := o.execute(ctx, &doc, stdout, progress); err != nil {
		return err
	}
	if o.jsonPath != "" {
		return writeJSON(o.jsonPath, doc)
	}
	return nil
}

// execute runs what the flags ask for and prints its table.
func (o *options) execute(ctx context.Context, doc *document, stdout, progress io.Writer) error {
	switch {
	case o.ceiling:
		c, err := bench.SearchCeiling(ctx, o.cfg, o.search, o.serverCmd, progress)
		if err != nil {
			return err
		}
		printCeiling(stdout, c, labelOr(o.label, o.serverCmd))
		doc.Ceiling = &c
	case o.vsCmd != "":
		c, err := bench.Compare(ctx, o.cfg, o.serverCmd, o.vsCmd, o.rounds, progress)
		if err != nil {
			return err
		}
		printComparison(stdout, c, labelOr(o.label, o.serverCmd), labelOr(o.vsLabel, o.vsCmd))
		c.A, c.B = redactCommand(c.A), redactCommand(c.B)
		doc.Comparison = &c
	case o.serverCmd != "":
		r, err := bench.RunServer(ctx, o.cfg, o.serverCmd, progress)
		if err != nil {
			return err
		}
		printResult(stdout, r, labelOr(o.label, o.serverCmd))
		doc.Result = &r
	default:
		r, err := bench.Run(ctx, o.cfg, progress)
		if err != nil {
			return err
		}
		printResult(stdout, r, labelOr(o.label, ""))
		doc.Result = &r
	}
	return nil
}

// printResult prints r's table, a summary line, and for the slow scenario
// the clean run's row and the ratio of their p99.
func printResult(w io.Writer, r bench.Result, label string) {
	fmt.Fprintln(w, r.MarkdownHeader())
	fmt.Fprintln(w, r.MarkdownRow(label))
	if r.Clean != nil {
		fmt.Fprintln(w, r.Clean.MarkdownRow(label+" (clean)"))
	}
	fmt.Fprintln(w, r.Summary())
	if r.Requests > 0 {
		fmt.Fprintf(w, "API: %d requests, round trip p50 %.2f ms p99 %.2f ms max %.2f ms, server says delivered %d\n",
			r.Requests, r.APIP50ms, r.APIP99ms, r.APIMaxMS, r.APIDelivered)
	}
	if r.Config.Channels > 0 {
		fmt.Fprintf(w, "channels: %d publish errors, %d misrouted, %d malformed", r.PublishErrors, r.Misrouted, r.Malformed)
		if len(r.Config.BrokerPIDs) > 0 {
			fmt.Fprintf(w, "; broker CPU %.3f cores", r.BrokerCPU)
		}
		fmt.Fprintln(w)
	}
	if r.TargetPS > 0 && r.PublishedPS < 0.95*r.TargetPS {
		fmt.Fprintf(w, "warning: publishers fell behind (%.0f%% of the asked rate); add -publishers or -batch\n", 100*r.PublishedPS/r.TargetPS)
	}
	if r.Clean != nil {
		fmt.Fprintf(w, "healthy subscribers' p99 with slow and stalled clients: %.2fx the clean run\n", r.P99ms/max(0.001, r.Clean.P99ms))
	}
}

func printComparison(w io.Writer, c bench.Comparison, a, b string) {
	if len(c.RunsA) > 0 {
		fmt.Fprintln(w, c.RunsA[0].MarkdownHeader())
	}
	for i := range c.RunsA {
		fmt.Fprintln(w, c.RunsA[i].MarkdownRow(a))
		fmt.Fprintln(w, c.RunsB[i].MarkdownRow(b))
	}
	fmt.Fprintf(w, "ratios (%s / %s, medians): p99 %.2fx, p50 %.2fx, RSS/conn %.2fx, throughput %.2fx\n",
		b, a, c.P99Ratio, c.P50Ratio, c.RSSRatio, c.ThroughputRatio)
}

func printCeiling(w io.Writer, c bench.Ceiling, label string) {
	if len(c.Phases) == 0 {
		return
	}
	head, sep, _ := strings.Cut(c.Phases[0].MarkdownHeader(), "\n")
	fmt.Fprintf(w, "%s kept up |\n%s---|\n", head, sep)
	for _, p := range c.Phases {
		fmt.Fprintf(w, "%s %s |\n", p.MarkdownRow(label), keptUp(p))
	}
	if c.Rate == 0 {
		fmt.Fprintln(w, "ceiling: no rate kept up")
		return
	}
	fmt.Fprintf(w, "ceiling: %.4g msg/s per publisher (%.0f deliveries/s offered) kept up: %.0f deliveries/s, p99 %.1f ms\n",
		c.Rate, c.Offered, c.DeliveriesPS, c.P99ms)
}

func keptUp(p bench.Phase) string {
	if p.KeptUp {
		return "yes"
	}
	return "no: " + p.Why
}

// labelOr names a server: label if set, else its command's program name
// (the script's for interpreters, as in "node server.js").
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
