// Command plot draws fanout-bench's -json documents as PNG charts: latency
// by percentile, deliveries/s and p99 over each second of the measurement,
// and for idle runs the server's RSS against connections. Every run of
// every document is one line on each chart, so runs of several servers
// compare on one chart.
//
// It is a module of its own so that the library's module graph holds no
// plotting library; it reads the documents' JSON keys, not the bench types.
//
//	go build -C bench/plot -o /tmp/fanout-plot . && /tmp/fanout-plot -o DIR a.json b.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// document is what plot reads of a fanout-bench -json file: one result, a
// comparison's runs, or a ceiling search's phases.
type document struct {
	Label      string  `json:"label"`
	VsLabel    string  `json:"vs_label"`
	Result     *result `json:"result"`
	Comparison *struct {
		RunsA, RunsB []result
	} `json:"comparison"`
	Ceiling *struct {
		Phases []result `json:"phases"`
	} `json:"ceiling"`
}

// result is what plot draws of one run.
type result struct {
	Config struct {
		Scenario string  `json:"scenario"`
		Rate     float64 `json:"msg_per_s"`
	} `json:"config"`
	Percentiles []struct {
		Percentile float64 `json:"percentile"`
		Ms         float64 `json:"ms"`
	} `json:"percentiles"`
	Series []sample `json:"series"`
}

// sample is one second of a run.
type sample struct {
	TS           float64 `json:"t_s"`
	Phase        string  `json:"phase"`
	Connected    int     `json:"connected"`
	DeliveriesPS float64 `json:"deliveries_per_s"`
	P99ms        float64 `json:"p99_ms"`
	ServerRSS    int64   `json:"server_rss_bytes"`
	GeneratorRSS int64   `json:"generator_rss_bytes"`
	MachineUsed  int64   `json:"machine_used_bytes"`
	KernelSlab   int64   `json:"kernel_slab_bytes"`
}

// run is one line on each chart.
type run struct {
	label string
	r     result
}

func main() {
	dir := flag.String("o", "", "directory to write latency.png, deliveries.png, p99.png and (idle runs) rss.png to")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: plot -o DIR file.json...\n\nDraws the runs of fanout-bench -json documents together.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := draw(*dir, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

// draw writes the charts of the runs in files to dir.
func draw(dir string, files []string) error {
	if dir == "" || len(files) == 0 {
		return errors.New("need -o DIR and at least one -json file")
	}
	var runs []run
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var doc document
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, doc.runs()...)
	}
	return writePlots(dir, runs)
}

// runs lists the runs of doc with their names.
func (doc document) runs() []run {
	var runs []run
	switch {
	case doc.Result != nil:
		runs = append(runs, run{doc.Label, *doc.Result})
	case doc.Comparison != nil:
		c := doc.Comparison
		for i := range min(len(c.RunsA), len(c.RunsB)) {
			runs = append(runs, run{fmt.Sprintf("%s r%d", doc.Label, i+1), c.RunsA[i]},
				run{fmt.Sprintf("%s r%d", doc.VsLabel, i+1), c.RunsB[i]})
		}
	case doc.Ceiling != nil:
		for _, p := range doc.Ceiling.Phases {
			runs = append(runs, run{fmt.Sprintf("%s %.4g msg/s", doc.Label, p.Config.Rate), p})
		}
	}
	for i := range runs {
		if runs[i].label == "" {
			runs[i].label = "run"
		}
	}
	return runs
}

// writePlots writes latency.png, deliveries.png and p99.png to dir for
// the runs that measured latency, rss.png for the idle ones, and
// memory.png (memory-N.png for the Nth of several) for each run that
// sampled the machine's memory.
func writePlots(dir string, runs []run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var idle, timed []run
	for _, r := range runs {
		if r.r.Config.Scenario == "idle" {
			idle = append(idle, r)
		} else if len(r.r.Percentiles) > 0 {
			timed = append(timed, r)
		}
	}
	charts := map[string]*plot.Plot{}
	if len(timed) > 0 {
		lat := chart(timed, "Latency by percentile", "percentile", "latency (ms)", latencyLine)
		lat.X.Tick.Marker = percentileTicks{}
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		charts["latency.png"] = lat
		charts["deliveries.png"] = chart(timed, "Deliveries per second", "time (s)", "deliveries/s", seriesLine(func(s sample) float64 { return s.DeliveriesPS }))
		charts["p99.png"] = chart(timed, "p99 latency of each second's deliveries", "time (s)", "p99 (ms)", seriesLine(func(s sample) float64 { return s.P99ms }))
	}
	if len(idle) > 0 {
		charts["rss.png"] = chart(idle, "Server RSS against connections", "connections", "server RSS (MiB)", rssLine)
	}
	var sampled []run
	for _, r := range runs {
		if len(r.r.Series) > 0 && r.r.Series[0].MachineUsed > 0 {
			sampled = append(sampled, r)
		}
	}
	for i, r := range sampled {
		name := "memory.png"
		if len(sampled) > 1 {
			name = fmt.Sprintf("memory-%d.png", i+1)
		}
		charts[name] = memoryChart(r)
	}
	if len(charts) == 0 {
		return errors.New("no run with latencies or an idle series to draw")
	}
	for name, p := range charts {
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// chart draws one line per run, line giving each run's points.
func chart(runs []run, title, x, y string, line func(result) plotter.XYs) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Legend.Top = true
	var lines []any
	for _, r := range runs {
		if pts := line(r.r); len(pts) > 0 {
			lines = append(lines, r.label, pts)
		}
	}
	_ = plotutil.AddLinePoints(p, lines...) // fails only on unknown argument types
	return p
}

// latencyLine places each percentile at -log10(1-q), so that 90, 99 and
// 99.9% are evenly spaced (as HdrHistogram's plots do); the 100th
// percentile has no place there and is left out.
func latencyLine(r result) plotter.XYs {
	var pts plotter.XYs
	for _, pt := range r.Percentiles {
		if pt.Percentile >= 100 || pt.Ms <= 0 {
			continue
		}
		pts = append(pts, plotter.XY{X: -math.Log10(1 - pt.Percentile/100), Y: pt.Ms})
	}
	return pts
}

// seriesLine plots v of each second of the measured window and its drain.
func seriesLine(v func(sample) float64) func(result) plotter.XYs {
	return func(r result) plotter.XYs {
		var pts plotter.XYs
		for _, s := range r.Series {
			if s.Phase == "measure" || s.Phase == "drain" {
				pts = append(pts, plotter.XY{X: s.TS, Y: v(s)})
			}
		}
		return pts
	}
}

// rssLine is the server's RSS at each second against the connections then.
func rssLine(r result) plotter.XYs {
	var pts plotter.XYs
	for _, s := range r.Series {
		if s.ServerRSS > 0 {
			pts = append(pts, plotter.XY{X: float64(s.Connected), Y: float64(s.ServerRSS) / (1 << 20)})
		}
	}
	return pts
}

// memoryChart is what r's connections cost against their number, second
// by second: the servers' and the generator's RSS, the kernel's slab and
// the whole machine's memory in use, in GiB (the slopes are the costs per
// connection).
func memoryChart(r run) *plot.Plot {
	p := plot.New()
	p.Title.Text = "Memory against connections: " + r.label
	p.X.Label.Text, p.Y.Label.Text = "connections", "GiB"
	p.Legend.Top, p.Legend.Left = true, true
	gib := func(v func(sample) int64) plotter.XYs {
		var pts plotter.XYs
		for _, s := range r.r.Series {
			pts = append(pts, plotter.XY{X: float64(s.Connected), Y: float64(v(s)) / (1 << 30)})
		}
		return pts
	}
	_ = plotutil.AddLinePoints(p,
		"machine in use", gib(func(s sample) int64 { return s.MachineUsed }),
		"kernel slab", gib(func(s sample) int64 { return s.KernelSlab }),
		"servers' RSS", gib(func(s sample) int64 { return s.ServerRSS }),
		"generator's RSS", gib(func(s sample) int64 { return s.GeneratorRSS }))
	return p
}

// percentileTicks labels the -log10(1-q) axis in percent.
type percentileTicks struct{}

func (percentileTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for x := math.Floor(lo); x <= math.Ceil(hi); x++ {
		q := 100 * (1 - math.Pow(10, -x))
		ts = append(ts, plot.Tick{Value: x, Label: fmt.Sprintf("%g%%", math.Round(q*1e4)/1e4)})
	}
	return ts
}
