package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is every figure of one run, with its configuration.
type Result struct {
	Config        Config
	Processes     int // load generator processes used
	Connected     int
	DialErrors    int
	RampSeconds   float64
	Sent          int64   // broadcast: messages published (all publishers); echo: messages sent; churn: handshakes
	Deliveries    int64   // broadcast: messages received by subscribers; echo: replies
	DeliveriesPS  float64 // per second of measurement
	Missing       int64   // broadcast: Sent*subscribers - Deliveries; echo: Sent - Deliveries
	Lost          int64   // sequence gaps seen by subscribers
	Reordered     int64
	Disconnected  int64   // connections the server closed
	Failed        int64   // churn: failed handshakes
	Misrouted     int64   `json:",omitempty"` // channel mode: deliveries of a channel the subscriber is not on
	Malformed     int64   `json:",omitempty"` // channel mode: message frames the generator could not read
	WireBytes     float64 `json:",omitempty"` // bytes subscribers read per delivery while measuring: frames as they went on the wire
	PublishedPS   float64 `json:",omitempty"` // broadcast: messages published per second of measurement
	TargetPS      float64 `json:",omitempty"` // broadcast: publishes per second asked for (Rate x streams)
	PublishErrors int64   `json:",omitempty"` // channel mode: messages refused (API status, WebSocket error reply) or failed
	Requests      int64   `json:",omitempty"` // API: requests answered with results (200, or 503 for a batch refused in part)
	APIDelivered  int64   `json:",omitempty"` // API: sum of the "delivered" counts in the answers
	APIP50us      int64   `json:",omitempty"` // API: request round trip percentiles as the publisher saw them
	APIP99us      int64   `json:",omitempty"`
	APIMaxUS      int64   `json:",omitempty"`
	P50us, P90us  int64
	P99us, P999us int64
	MaxUS         int64
	ServerRSSBase int64   // all sampled servers, before connecting
	ServerRSS     int64   // after the ramp and settle
	ServerRSSEnd  int64   // after measuring (and draining)
	ServerRSSPeak int64   // the sampled servers' peak RSS (VmHWM) at the end
	RSSPerConn    float64 // (ServerRSS-ServerRSSBase)/Connected
	ServerCPU     float64 // server CPU seconds per second while measuring
	GeneratorCPU  float64 // this process's CPU seconds per second while measuring (workers not included)
	MachineCPU    float64 // all cores' busy seconds per second while measuring: what is not server or generator is other load
	BrokerCPU     float64 `json:",omitempty"` // Config.BrokerPIDs' CPU seconds per second while measuring (part of MachineCPU, not of ServerCPU)
	BrokerRSSEnd  int64   `json:",omitempty"` // Config.BrokerPIDs' RSS after measuring
	Clean         *Result `json:",omitempty"` // slow: the clean run it is compared with

	pub pubReport
}

// member is a share of the connections: in this process or in a worker
// process of the load generator.
type member interface {
	ready() (connected, dialErrors int, err error) // ramp finished
	progress() (connected, dialErrors int)         // so far (0, 0 for worker processes)
	start() error                                  // begin measuring (and sending, for echo and churn)
	stop() (snapshot, error)                       // end measuring, report
	close()
}

// Run executes cfg and stops by itself after cfg.Timeout at the latest.
// Progress lines go to progress (nil for none). When cfg.Conns is more than
// one process can hold, Run starts worker processes of the current
// executable (see RunWorker) and merges their results.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if progress == nil {
		progress = io.Discard
	}
	if cfg.Scenario == ScenarioSlow {
		clean := cfg
		clean.Scenario = ScenarioBroadcast
		cr, err := run(ctx, clean, progress)
		if err != nil {
			return cr, err
		}
		r, err := run(ctx, cfg, progress)
		r.Clean = &cr
		return r, err
	}
	return run(ctx, cfg, progress)
}

func run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	res := Result{Config: cfg}
	base, err := sampleAll(cfg.ServerPIDs)
	if err != nil {
		return res, err
	}
	res.ServerRSSBase = base.RSSBytes

	per := cfg.PerProcess
	if per <= 0 {
		var rl syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		per = int(rl.Cur) - 500
	}
	shares := split(cfg.Conns, per)
	res.Processes = len(shares)
	var members []member
	defer func() {
		for _, m := range members {
			m.close()
		}
	}()
	start := time.Now()
	first := 0
	for _, n := range shares {
		var m member
		if len(shares) == 1 {
			m, err = newLocal(ctx, cfg, first, n)
		} else {
			m, err = startWorker(ctx, cfg, first, n)
		}
		if err != nil {
			return res, err
		}
		members = append(members, m)
		first += n
	}
	stopTicker := make(chan struct{})
	go func() { // live ramp line: in-process members report as they go
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTicker:
				return
			case <-t.C:
				c, f := 0, 0
				for _, m := range members {
					mc, mf := m.progress()
					c, f = c+mc, f+mf
				}
				fmt.Fprintf(progress, "\rconnecting: %d/%d connected, %d failed, %.0fs  ", c, cfg.Conns, f, time.Since(start).Seconds())
			}
		}
	}()
	for _, m := range members {
		c, f, err := m.ready()
		if err != nil {
			close(stopTicker)
			return res, err
		}
		res.Connected += c
		res.DialErrors += f
	}
	close(stopTicker)
	res.RampSeconds = time.Since(start).Seconds()
	fmt.Fprintf(progress, "connected %d/%d (%d failed) in %.1fs over %d process(es)\n", res.Connected, cfg.Conns, res.DialErrors, res.RampSeconds, len(members))
	if res.Connected == 0 && cfg.Scenario != ScenarioChurn {
		return res, fmt.Errorf("bench: none of %d connections succeeded (is the server at %s up?)", cfg.Conns, cfg.URLs[0])
	}
	sleep(ctx, cfg.Settle)

	before, _ := sampleAll(cfg.ServerPIDs)
	res.ServerRSS = before.RSSBytes
	broker0, err := sampleAll(cfg.BrokerPIDs)
	if err != nil {
		return res, err
	}
	if res.Connected > 0 {
		res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(res.Connected)
	}
	for _, m := range members {
		if err := m.start(); err != nil {
			return res, err
		}
	}
	self0, _ := sampleProc(os.Getpid())
	machine0 := machineTicks()
	t0 := time.Now()
	switch cfg.Scenario {
	case ScenarioBroadcast, ScenarioSlow:
		rep, err := publish(ctx, cfg, progress)
		if err != nil {
			return res, err
		}
		res.pub = rep
	default:
		tick := time.NewTicker(time.Second)
		end := time.After(cfg.Duration)
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case <-end:
				break wait
			case <-tick.C:
				fmt.Fprintf(progress, "\r%s: %.0fs  ", cfg.Scenario, time.Since(t0).Seconds())
			}
		}
		tick.Stop()
		if cfg.Scenario == ScenarioEcho {
			sleep(ctx, cfg.Drain)
		}
	}
	elapsed := time.Since(t0)
	after, _ := sampleAll(cfg.ServerPIDs)
	res.ServerRSSEnd, res.ServerRSSPeak = after.RSSBytes, after.PeakBytes
	if cfg.Scenario == ScenarioIdle {
		res.ServerRSS = after.RSSBytes
		if res.Connected > 0 {
			res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(res.Connected)
		}
	}
	res.ServerCPU = float64(after.CPUTicks-before.CPUTicks) / 100 / elapsed.Seconds()
	if broker1, err := sampleAll(cfg.BrokerPIDs); err == nil && len(cfg.BrokerPIDs) > 0 {
		res.BrokerCPU = float64(broker1.CPUTicks-broker0.CPUTicks) / 100 / elapsed.Seconds()
		res.BrokerRSSEnd = broker1.RSSBytes
	}
	self1, _ := sampleProc(os.Getpid())
	res.GeneratorCPU = float64(self1.CPUTicks-self0.CPUTicks) / 100 / elapsed.Seconds()
	res.MachineCPU = float64(machineTicks()-machine0) / 100 / elapsed.Seconds()

	var total snapshot
	for _, m := range members {
		s, err := m.stop()
		if err != nil {
			return res, err
		}
		total.merge(s)
	}
	fmt.Fprintln(progress)
	res.fill(total)
	return res, nil
}

// fill computes the result's figures from the merged snapshot.
func (r *Result) fill(s snapshot) {
	cfg := r.Config
	r.Deliveries, r.Lost, r.Reordered, r.Disconnected, r.Failed = s.Received, s.Lost, s.Reordered, s.Closed, s.Failed
	if s.Received > 0 {
		r.WireBytes = float64(s.RxBytes) / float64(s.Received)
	}
	r.Misrouted, r.Malformed = s.Misrouted, s.Malformed
	switch cfg.Scenario {
	case ScenarioBroadcast, ScenarioSlow:
		var want float64
		for st, n := range r.pub.sent {
			r.Sent += n
			if cfg.Channels > 0 {
				// A channel's messages reach the subscribers that
				// connected to it, as the members counted them.
				if st < len(s.Subs) {
					want += float64(n) * float64(s.Subs[st])
				}
				continue
			}
			// Each publisher reaches the subscribers of its own target.
			// They were spread round-robin; failed dials are assumed
			// spread alike.
			want += float64(n) * float64(r.Connected) * targetShare(cfg.Conns, len(cfg.URLs), st%len(cfg.URLs))
		}
		r.Missing = int64(math.Round(want)) - r.Deliveries
		r.DeliveriesPS = float64(r.Deliveries) / cfg.Duration.Seconds()
		r.PublishedPS = float64(r.Sent) / cfg.Duration.Seconds()
		r.TargetPS = cfg.Rate * float64(cfg.streams())
		r.PublishErrors, r.Requests, r.APIDelivered = r.pub.errors, r.pub.requests, r.pub.delivered
		if h := r.pub.api; h != nil && h.TotalCount() > 0 {
			r.APIP50us, r.APIP99us, r.APIMaxUS = h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max()
		}
	case ScenarioEcho:
		r.Sent = s.Sent
		r.Missing = r.Sent - r.Deliveries
		r.DeliveriesPS = float64(r.Deliveries) / cfg.Duration.Seconds()
	case ScenarioChurn:
		r.Sent = s.Sent
		r.DeliveriesPS = float64(r.Sent) / cfg.Duration.Seconds()
	}
	if s.Hist != nil {
		h := hdrhistogram.Import(s.Hist)
		if h.TotalCount() > 0 {
			r.P50us, r.P90us = h.ValueAtQuantile(50), h.ValueAtQuantile(90)
			r.P99us, r.P999us = h.ValueAtQuantile(99), h.ValueAtQuantile(99.9)
			r.MaxUS = h.Max()
		}
	}
}

// targetShare is the fraction of n connections, spread round-robin over k
// targets, that went to target t.
func targetShare(n, k, t int) float64 {
	c := n / k
	if t < n%k {
		c++
	}
	return float64(c) / float64(n)
}

// split divides n connections into shares of at most per.
func split(n, per int) []int {
	k := max(1, int(math.Ceil(float64(n)/float64(max(1, per)))))
	shares := make([]int, k)
	for i := range shares {
		shares[i] = n / k
		if i < n%k {
			shares[i]++
		}
	}
	return shares
}

func sampleAll(pids []int) (procSample, error) {
	var total procSample
	for _, pid := range pids {
		s, err := sampleProc(pid)
		if err != nil {
			return total, fmt.Errorf("bench: server pid %d: %w", pid, err)
		}
		total.RSSBytes += s.RSSBytes
		total.PeakBytes += s.PeakBytes
		total.CPUTicks += s.CPUTicks
	}
	return total, nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// isTerminal reports whether f is a character device (a live progress line
// makes sense there).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Progress returns where Run should print progress: stderr on a terminal
// unless quiet.
func Progress(quiet bool) io.Writer {
	if quiet || !isTerminal(os.Stderr) {
		return nil
	}
	return os.Stderr
}
