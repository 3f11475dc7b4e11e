package bench

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fanout-ws/fanout/internal/procstat"
)

// Sample is one second of a run, as the progress line shows it.
type Sample struct {
	TS           float64 `json:"t_s"`   // since the run began
	Phase        string  `json:"phase"` // ramp, settle, measure, drain
	Connected    int     `json:"connected"`
	Sent         int64   `json:"sent"`             // so far while measuring (see Result.Sent)
	DeliveriesPS float64 `json:"deliveries_per_s"` // over this second
	P50ms        float64 `json:"p50_ms"`           // of this second's deliveries
	P99ms        float64 `json:"p99_ms"`
	ServerCPU    float64 `json:"server_cpu_cores"` // over this second
	ServerRSS    int64   `json:"server_rss_bytes"`
	GeneratorRSS int64   `json:"generator_rss_bytes"` // this process and its workers
	MachineUsed  int64   `json:"machine_used_bytes"`  // MemTotal - MemAvailable
	KernelSlab   int64   `json:"kernel_slab_bytes"`
}

// live prints a progress line every second and keeps each as a Sample.
type live struct {
	cfg       Config
	out       io.Writer
	members   []member
	published atomic.Int64 // broadcast: messages accepted so far
	phase     atomic.Value // string
	start     time.Time
	stopc     chan struct{}
	stopOnce  sync.Once
	done      sync.WaitGroup
	samples   []Sample

	// the previous tick
	at       time.Time
	received int64
	hist     *hdrhistogram.Snapshot
	cpu      int64
}

// lockedWriter serialises writes: the progress lines and run's own
// messages share a writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startLive prints to out, which run writes to as well (a lockedWriter).
func startLive(cfg Config, out io.Writer, members []member) *live {
	l := &live{cfg: cfg, out: out, members: members, start: time.Now(), stopc: make(chan struct{})}
	l.at = l.start
	l.phase.Store("ramp")
	if s, err := sampleAll(cfg.ServerPIDs); err == nil {
		l.cpu = s.CPUTicks
	}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-l.stopc:
				return
			case <-t.C:
				l.tick()
			}
		}
	}()
	return l
}

func (l *live) setPhase(p string) { l.phase.Store(p) }

// stop ends the progress lines and returns the samples; it may be called
// again.
func (l *live) stop() []Sample {
	l.stopOnce.Do(func() { close(l.stopc) })
	l.done.Wait()
	return l.samples
}

func (l *live) tick() {
	var total snapshot
	for _, m := range l.members {
		total.merge(m.progress())
	}
	now := time.Now()
	dt := now.Sub(l.at).Seconds()
	s := Sample{TS: now.Sub(l.start).Seconds(), Phase: l.phase.Load().(string), Connected: total.Connected,
		Sent: l.published.Load() + total.Sent}
	received := total.Received
	if received < l.received { // measuring began: counters were reset
		l.received, l.hist = 0, nil
	}
	s.DeliveriesPS = float64(received-l.received) / dt
	if d := histDiff(total.Hist, l.hist); d != nil && d.TotalCount() > 0 {
		s.P50ms, s.P99ms = float64(d.ValueAtQuantile(50))/1000, float64(d.ValueAtQuantile(99))/1000
	}
	if ps, err := sampleAll(l.cfg.ServerPIDs); err == nil && len(l.cfg.ServerPIDs) > 0 {
		s.ServerCPU, s.ServerRSS = float64(ps.CPUTicks-l.cpu)/procstat.TicksPerSecond/dt, ps.RSSBytes
		l.cpu = ps.CPUTicks
	}
	s.GeneratorRSS = generatorRSS(l.members)
	s.MachineUsed, s.KernelSlab = machineMemory()
	l.at, l.received, l.hist = now, received, total.Hist
	l.samples = append(l.samples, s)
	l.print(s, total)
}

func (l *live) print(s Sample, total snapshot) {
	p50, p99 := "-", "-"
	if total.Hist != nil {
		if h := hdrhistogram.Import(total.Hist); h.TotalCount() > 0 {
			p50 = fmt.Sprintf("%.2fms", float64(h.ValueAtQuantile(50))/1000)
			p99 = fmt.Sprintf("%.2fms", float64(h.ValueAtQuantile(99))/1000)
		}
	}
	fmt.Fprintf(l.out, "%5.0fs %-7s connected %d/%d, sent %d, delivered %.0f/s, p50 %s p99 %s so far, server %.2f cores %.0f MiB\n",
		s.TS, s.Phase, s.Connected, l.cfg.Conns, s.Sent, s.DeliveriesPS, p50, p99, s.ServerCPU, float64(s.ServerRSS)/(1<<20))
}

// histDiff is the histogram of what cur recorded since prev (cur when prev
// is nil); both come from histograms of the same shape.
func histDiff(cur, prev *hdrhistogram.Snapshot) *hdrhistogram.Histogram {
	if cur == nil {
		return nil
	}
	if prev == nil || len(prev.Counts) != len(cur.Counts) {
		return hdrhistogram.Import(cur)
	}
	d := *cur
	d.Counts = make([]int64, len(cur.Counts))
	for i := range d.Counts {
		d.Counts[i] = max(0, cur.Counts[i]-prev.Counts[i])
	}
	return hdrhistogram.Import(&d)
}
