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
	c.P99Ratio = ratio(func(r Result) float64 { return float64(r.P99us) })
	c.P50Ratio = ratio(func(r Result) float64 { return float64(r.P50us) })
	c.RSSRatio = ratio(func(r Result) float64 { return r.RSSPerConn })
	c.ThroughputRatio = ratio(func(r Result) float64 { return r.DeliveriesPS })
	return c, nil
}

// RunServer starts command, waits until it accepts on the first target's
// address, runs cfg with its PID sampled, and stops it with SIGTERM.
func RunServer(ctx context.Context, cfg Config, command string, progress io.Writer) (Result, error) {
	argv := strings.Fields(command)
	if len(argv) == 0 {
		return Result{}, errors.New("bench: empty server command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("bench: start %q: %w", command, err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	addr := hostOf(cfg.URLs[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("bench: %q is not accepting on %s: %w", command, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfg.ServerPIDs = append([]int{cmd.Process.Pid}, cfg.ServerPIDs...)
	return Run(ctx, cfg, progress)
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
