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
	"github.com/fanout-ws/fanout/internal/procstat"
)

// member is a share of the connections: in this process or in a worker
// process of the load generator.
type member interface {
	ready() (connected, dialErrors int, err error) // ramp finished
	progress() snapshot                            // so far: connections, and while measuring counters and latencies
	start() error                                  // begin measuring (and sending, for echo and churn)
	stop() (snapshot, error)                       // end measuring, report
	close()
	pid() int // the process holding its connections
}

// Run executes cfg and stops by itself after cfg.Timeout at the latest.
// A progress line goes to progress every second (nil for none). When
// cfg.Conns is more than one process can hold, Run starts worker processes
// of the current executable (see RunWorker) and merges their results.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("bench: the run's -timeout (%v) passed", cfg.Timeout))
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
	progress = &lockedWriter{w: progress}
	for _, pid := range cfg.ServerPIDs {
		if len(cfg.PinServer) > 0 {
			if err := PinProcess(pid, cfg.PinServer); err != nil {
				return res, err
			}
		}
	}
	base, err := sampleAll(cfg.ServerPIDs)
	if err != nil {
		return res, err
	}
	res.ServerRSSBase = base.RSSBytes
	self, _ := sampleProc(os.Getpid())
	used, slab := machineMemory()
	members, err := startMembers(ctx, cfg)
	defer func() {
		for _, m := range members {
			m.close()
		}
	}()
	if err != nil {
		return res, err
	}
	res.Processes = len(members)
	lv := startLive(cfg, progress, members)
	defer lv.stop()
	if err := ramp(cfg, members, &res, progress); err != nil {
		return res, err
	}
	lv.setPhase("settle")
	sleep(ctx, cfg.Settle)
	w, err := openWindow(cfg, &res)
	if err != nil {
		return res, err
	}
	if res.Connected > 0 {
		n := float64(res.Connected)
		res.GeneratorRSSPerConn = float64(generatorRSS(members)-self.RSSBytes) / n
		u, sl := machineMemory()
		res.MachinePerConn, res.SlabPerConn = float64(u-used)/n, float64(sl-slab)/n
	}
	for _, m := range members {
		if err := m.start(); err != nil {
			return res, err
		}
	}
	lv.setPhase("measure")
	if err := measure(ctx, cfg, &res, lv); err != nil {
		return res, err
	}
	after := w.close(cfg, &res)
	var total snapshot
	for _, m := range members {
		s, err := m.stop()
		if err != nil {
			return res, err
		}
		total.merge(s)
	}
	res.fill(total)
	res.perDelivery(w.metrics, after)
	res.Series = lv.stop()
	return res, nil
}

// startMembers divides cfg.Conns into shares one process can hold and
// starts a member for each: this process alone, or worker processes.
func startMembers(ctx context.Context, cfg Config) ([]member, error) {
	per := cfg.PerProcess
	if per <= 0 {
		var rl syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		per = int(rl.Cur) - 500
	}
	shares := split(cfg.Conns, per)
	var members []member
	first := 0
	for _, n := range shares {
		var m member
		var err error
		if len(shares) == 1 {
			m, err = newLocal(ctx, cfg, first, n)
		} else {
			m, err = startWorker(ctx, cfg, first, n)
		}
		if err != nil {
			return members, err
		}
		members = append(members, m)
		first += n
	}
	return members, nil
}

// ramp waits for every member's connections.
func ramp(cfg Config, members []member, res *Result, progress io.Writer) error {
	start := time.Now()
	for _, m := range members {
		c, f, err := m.ready()
		if err != nil {
			return err
		}
		res.Connected += c
		res.DialErrors += f
	}
	res.RampS = time.Since(start).Seconds()
	fmt.Fprintf(progress, "connected %d/%d (%d failed) in %.1fs over %d process(es)\n", res.Connected, cfg.Conns, res.DialErrors, res.RampS, len(members))
	if res.Connected == 0 && cfg.Scenario != ScenarioChurn {
		return fmt.Errorf("bench: none of %d connections succeeded (is the server at %s up?)", cfg.Conns, cfg.URLs[0])
	}
	return nil
}

// measure drives the scenario for cfg.Duration and its drain.
func measure(ctx context.Context, cfg Config, res *Result, lv *live) error {
	switch cfg.Scenario {
	case ScenarioBroadcast, ScenarioSlow:
		rep, err := publish(ctx, cfg, lv)
		res.pub = rep
		return err
	}
	sleep(ctx, cfg.Duration)
	if cfg.Scenario == ScenarioEcho {
		lv.setPhase("drain")
		sleep(ctx, cfg.Drain)
	}
	return nil
}

// window is what was sampled when measuring began.
type window struct {
	t0                   time.Time
	server, broker, self procSample
	machine              int64
	metrics              series
}

func openWindow(cfg Config, res *Result) (*window, error) {
	w := &window{}
	w.server, _ = sampleAll(cfg.ServerPIDs)
	res.ServerRSS = w.server.RSSBytes
	var err error
	if w.broker, err = sampleAll(cfg.BrokerPIDs); err != nil {
		return nil, err
	}
	if cfg.MetricsURL != "" {
		if w.metrics, err = scrape(cfg.MetricsURL); err != nil {
			return nil, err
		}
	}
	if res.Connected > 0 {
		res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(res.Connected)
	}
	w.self, _ = sampleProc(os.Getpid())
	w.machine = machineTicks()
	w.t0 = time.Now()
	return w, nil
}

// close samples the end of the window into res and returns the server's
// metrics then (nil without Config.MetricsURL).
func (w *window) close(cfg Config, res *Result) series {
	secs := time.Since(w.t0).Seconds()
	after, _ := sampleAll(cfg.ServerPIDs)
	res.ServerRSSEnd, res.ServerRSSPeak = after.RSSBytes, after.PeakBytes
	if cfg.Scenario == ScenarioIdle {
		res.ServerRSS = after.RSSBytes
		if res.Connected > 0 {
			res.RSSPerConn = float64(res.ServerRSS-res.ServerRSSBase) / float64(res.Connected)
		}
	}
	res.ServerCPUS = float64(after.CPUTicks-w.server.CPUTicks) / procstat.TicksPerSecond
	res.ServerCPU = res.ServerCPUS / secs
	if broker, err := sampleAll(cfg.BrokerPIDs); err == nil && len(cfg.BrokerPIDs) > 0 {
		res.BrokerCPU = float64(broker.CPUTicks-w.broker.CPUTicks) / procstat.TicksPerSecond / secs
		res.BrokerRSSEnd = broker.RSSBytes
	}
	self, _ := sampleProc(os.Getpid())
	res.GeneratorCPU = float64(self.CPUTicks-w.self.CPUTicks) / procstat.TicksPerSecond / secs
	res.MachineCPU = float64(machineTicks()-w.machine) / procstat.TicksPerSecond / secs
	if cfg.MetricsURL == "" {
		return nil
	}
	m, _ := scrape(cfg.MetricsURL)
	return m
}

// perDelivery computes the costs per delivery once deliveries are known.
func (r *Result) perDelivery(before, after series) {
	if r.Deliveries > 0 {
		r.CPUPerDeliv = r.ServerCPUS * 1e6 / float64(r.Deliveries)
	}
	if before != nil && after != nil {
		r.Writes = writePath(before, after, r.Deliveries)
	}
}

// fill computes the result's figures from the merged snapshot.
func (r *Result) fill(s snapshot) {
	cfg := r.Config
	r.Deliveries, r.Lost, r.Reordered, r.Disconnected, r.Failed = s.Received, s.Lost, s.Reordered, s.Closed, s.Failed
	r.Misrouted, r.Malformed = s.Misrouted, s.Malformed
	if s.Storm != nil {
		r.Storm = newStorm(cfg, s.Storm)
	}
	if s.Received > 0 {
		r.WireBytes = float64(s.RxBytes) / float64(s.Received)
	}
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
			r.APIP50ms, r.APIP99ms, r.APIMaxMS = float64(h.ValueAtQuantile(50))/1000, float64(h.ValueAtQuantile(99))/1000, float64(h.Max())/1000
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
			ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
			r.P50ms, r.P90ms, r.P99ms, r.P999ms = ms(50), ms(90), ms(99), ms(99.9)
			r.MaxMS = float64(h.Max()) / 1000
			r.Percentiles = percentiles(h)
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
