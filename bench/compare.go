package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Comparison is the same scenario run against two servers, alternating over
// several rounds so that a noisy machine affects both alike.
type Comparison struct {
	A, B         string   // the server commands
	RunsA, RunsB []Result // in round order
	// Ratios of B to A medians: above 1 means A is better for latency and
	// memory, below 1 means A is better for throughput.
	P99Ratio, P50Ratio, RSSRatio, ThroughputRatio float64
}

// Compare starts each server command in turn (argv split on spaces, no
// shell; it must listen on the first target URL's address), runs cfg
// against it and stops it, for rounds rounds.
func Compare(ctx context.Context, cfg Config, cmdA, cmdB string, rounds int, progress io.Writer) (Comparison, error) {
	c := Comparison{A: cmdA, B: cmdB}
	if progress == nil {
		progress = io.Discard
	}
	for i := range max(1, rounds) {
		for _, side := range []string{cmdA, cmdB} {
			if side == "" {
				continue
			}
			fmt.Fprintf(progress, "round %d: %s\n", i+1, side)
			r, err := RunServer(ctx, cfg, side, progress)
			if err != nil {
				return c, err
			}
			if side == cmdA {
				c.RunsA = append(c.RunsA, r)
			} else {
				c.RunsB = append(c.RunsB, r)
			}
		}
	}
	ratio := func(f func(Result) float64) float64 {
		a, b := median(c.RunsA, f), median(c.RunsB, f)
		if a == 0 {
			return 0
		}
		return b / a
	}
	c.P99Ratio = ratio(func(r Result) float64 { return r.P99ms })
	c.P50Ratio = ratio(func(r Result) float64 { return r.P50ms })
	c.RSSRatio = ratio(func(r Result) float64 { return r.RSSPerConn })
	c.ThroughputRatio = ratio(func(r Result) float64 { return r.DeliveriesPS })
	return c, nil
}

// RunServer starts command (restricted to cfg.PinServer when set, its
// output appended to cfg.ServerLog), waits until it accepts on the first
// target's address, runs cfg with its PID sampled, and stops it with
// SIGINT.
func RunServer(ctx context.Context, cfg Config, command string, progress io.Writer) (Result, error) {
	argv := strings.Fields(command)
	if len(argv) == 0 {
		return Result{}, errors.New("bench: empty server command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if cfg.ServerLog != "" {
		f, err := os.OpenFile(cfg.ServerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return Result{}, fmt.Errorf("bench: server log: %w", err)
		}
		defer f.Close()
		fmt.Fprintf(f, "== %s %s\n", time.Now().UTC().Format(time.RFC3339), command)
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := startPinned(cmd, cfg.PinServer); err != nil {
		return Result{}, fmt.Errorf("bench: start %q: %w", command, err)
	}
	defer stopServer(cmd)
	if err := waitAccepting(hostOf(cfg.URLs[0])); err != nil {
		return Result{}, fmt.Errorf("bench: %q is not accepting: %w", command, err)
	}
	cfg.ServerPIDs = append([]int{cmd.Process.Pid}, cfg.ServerPIDs...)
	return Run(ctx, cfg, progress)
}

// waitAccepting dials addr until it accepts, for up to 10 s.
func waitAccepting(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return nc.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopServer interrupts cmd and kills it if it has not exited in 15 s.
func stopServer(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func median(rs []Result, f func(Result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
