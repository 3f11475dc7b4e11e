package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// Result is every figure of one run, with its configuration.
type Result struct {
	Config        Config
	Connected     int
	DialErrors    int
	RampSeconds   float64
	Sent          int64   // broadcast messages published while measuring
	Deliveries    int64   // messages received by subscribers while measuring
	DeliveriesPS  float64 // deliveries per second
	Missing       int64   // Sent*Connected - Deliveries: never arrived
	Lost          int64   // sequence gaps seen by subscribers
	Reordered     int64
	Disconnected  int64
	P50us, P90us  int64
	P99us, P999us int64
	MaxUS         int64
	ServerRSSBase int64   // before connecting
	ServerRSS     int64   // after the ramp and settle
	RSSPerConn    float64 // (ServerRSS-ServerRSSBase)/Connected
	ServerCPU     float64 // server CPU seconds per wall second while measuring
}

// Run executes cfg. Progress lines go to progress (nil for none).
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if cfg.DialRate <= 0 {
		cfg.DialRate = 5000
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 3 * time.Second
	}
	if progress == nil {
		progress = io.Discard
	}
	res := Result{Config: cfg}
	if cfg.ServerPID > 0 {
		s, err := sampleProc(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		res.ServerRSSBase = s.RSSBytes
	}

	st := newStats()
	var measuring atomic.Bool
	d := &dialer{sources: cfg.SourceIPs}
	conns := make([]net.Conn, 0, cfg.Conns)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(1, min(cfg.DialRate, 1000))))
	perTick := max(1, cfg.DialRate/1000)
	sem := make(chan struct{}, 256)
	for i := 0; i < cfg.Conns && ctx.Err() == nil; {
		<-tick.C
		for j := 0; j < perTick && i < cfg.Conns; j, i = j+1, i+1 {
			sem <- struct{}{}
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				defer func() { <-sem }()
				nc, err := d.dial(ctx, cfg.URL)
				if err != nil {
					if dialErrs.Add(1) <= 3 {
						fmt.Fprintf(progress, "dial: %v\n", err)
					}
					return
				}
				mu.Lock()
				conns = append(conns, nc)
				mu.Unlock()
				go subscribe(nc, id, st, &measuring)
			}(i)
		}
		if i%1000 == 0 {
			fmt.Fprintf(progress, "\rconnected %d/%d failed %d", len(conns), cfg.Conns, dialErrs.Load())
		}
	}
	tick.Stop()
	wg.Wait()
	res.RampSeconds = time.Since(start).Seconds()
	res.Connected, res.DialErrors = len(conns), int(dialErrs.Load())
	fmt.Fprintf(progress, "\rconnected %d/%d failed %d in %.1fs\n", res.Connected, cfg.Conns, res.DialErrors, res.RampSeconds)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	sleep(ctx, cfg.Settle)

	var cpu0 procSample
	if cfg.ServerPID > 0 {
		s, err := sampleProc(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		res.ServerRSS = s.RSSBytes
		cpu0 = s
		if res.Connected > 0 {
			res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(res.Connected)
		}
	}

	t0 := time.Now()
	switch cfg.Scenario {
	case "idle":
		sleep(ctx, cfg.Duration)
	case "broadcast":
		sent, err := publish(ctx, cfg, d, st, &measuring, progress)
		if err != nil {
			return res, err
		}
		res.Sent = sent
	}
	elapsed := time.Since(t0)
	if cfg.ServerPID > 0 {
		if s, err := sampleProc(cfg.ServerPID); err == nil {
			res.ServerCPU = float64(s.CPUTicks-cpu0.CPUTicks) / 100 / elapsed.Seconds()
			if cfg.Scenario == "idle" {
				res.ServerRSS = s.RSSBytes
				res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(max(1, res.Connected))
			}
		}
	}
	res.Deliveries = st.received.Load()
	res.Lost = st.lost.Load()
	res.Reordered = st.reordered.Load()
	res.Disconnected = st.closed.Load()
	if cfg.Scenario == "broadcast" {
		res.Missing = res.Sent*int64(res.Connected) - res.Deliveries
		res.DeliveriesPS = float64(res.Deliveries) / cfg.Duration.Seconds()
		h := st.merged()
		res.P50us, res.P90us = h.ValueAtQuantile(50), h.ValueAtQuantile(90)
		res.P99us, res.P999us = h.ValueAtQuantile(99), h.ValueAtQuantile(99.9)
		res.MaxUS = h.Max()
	}
	return res, nil
}

// publish sends Rate messages per second for Duration over its own
// connection, then waits for the deliveries to drain.
func publish(ctx context.Context, cfg Config, d *dialer, st *stats, measuring *atomic.Bool, progress io.Writer) (int64, error) {
	pc, err := d.dial(ctx, cfg.URL)
	if err != nil {
		return 0, fmt.Errorf("bench: publisher: %w", err)
	}
	defer pc.Close()
	go func() { _, _ = io.Copy(io.Discard, pc) }() // the room echoes to us too

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	st.reset()
	measuring.Store(true)
	end := time.Now().Add(cfg.Duration)
	next := time.Now()
	var seq uint64
	lastReport := time.Now()
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for time.Now().Before(end) && ctx.Err() == nil {
		seq++
		if _, err := pc.Write(frame.AppendClientFrame(nil, frame.OpBinary, message(cfg.Size, seq), key)); err != nil {
			return int64(seq - 1), fmt.Errorf("bench: publish: %w", err)
		}
		if time.Since(lastReport) > time.Second {
			lastReport = time.Now()
			h := st.merged()
			fmt.Fprintf(progress, "\rsent %d delivered %d p99 %dus lost %d   ", seq, st.received.Load(), h.ValueAtQuantile(99), st.lost.Load())
		}
		next = next.Add(interval)
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
	}
	want := int64(seq) * int64(cfg.Conns)
	deadline := time.Now().Add(cfg.Drain)
	for st.received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	measuring.Store(false)
	fmt.Fprintln(progress)
	return int64(seq), nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// MarkdownRow is the result as one row of BENCHMARKS.md's tables:
// server | conns | payload | msg/s | deliveries/s | missing | p50 | p99 | p99.9 | max | RSS/conn | server CPU.
func (r Result) MarkdownRow(label string) string {
	if r.Config.Scenario == "idle" {
		return fmt.Sprintf("| %s | %d | %.0f MiB | %.0f MiB | %.0f B | %.2f |", label, r.Connected,
			float64(r.ServerRSSBase)/(1<<20), float64(r.ServerRSS)/(1<<20), r.RSSPerConn, r.ServerCPU)
	}
	ms := func(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }
	return fmt.Sprintf("| %s | %d | %d B | %.0f | %.0f | %d | %s | %s | %s | %s | %.2f |", label, r.Connected, r.Config.Size,
		r.Config.Rate, r.DeliveriesPS, r.Missing, ms(r.P50us), ms(r.P99us), ms(r.P999us), ms(r.MaxUS), r.ServerCPU)
}
