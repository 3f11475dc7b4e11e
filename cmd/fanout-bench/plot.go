package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/fanout-ws/fanout/bench"
)

// plotRun is one line on each chart.
type plotRun struct {
	label string
	r     bench.Result
}

// plotRuns lists the runs of doc with their names.
func plotRuns(doc document) []plotRun {
	var runs []plotRun
	switch {
	case doc.Result != nil:
		runs = append(runs, plotRun{doc.Label, *doc.Result})
	case doc.Comparison != nil:
		c := doc.Comparison
		for i := range c.RunsA {
			runs = append(runs, plotRun{fmt.Sprintf("%s r%d", doc.Label, i+1), c.RunsA[i]},
				plotRun{fmt.Sprintf("%s r%d", doc.VsLabel, i+1), c.RunsB[i]})
		}
	case doc.Ceiling != nil:
		for _, p := range doc.Ceiling.Phases {
			runs = append(runs, plotRun{fmt.Sprintf("%s %.4g msg/s", doc.Label, p.Config.Rate), p.Result})
		}
	}
	for i := range runs {
		if runs[i].label == "" {
			runs[i].label = "run"
		}
	}
	return runs
}

// replot draws the runs of earlier -json documents together into dir.
func replot(dir string, files []string) error {
	if dir == "" {
		return errors.New("-replot needs -plot DIR")
	}
	var runs []plotRun
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var doc document
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, plotRuns(doc)...)
	}
	return writePlots(dir, runs)
}

// writePlots writes latency.png, deliveries.png and p99.png to dir for
// the runs that measured latency, and rss.png for the idle ones.
func writePlots(dir string, runs []plotRun) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var idle, timed []plotRun
	for _, r := range runs {
		if r.r.Config.Scenario == bench.ScenarioIdle {
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
		charts["deliveries.png"] = chart(timed, "Deliveries per second", "time (s)", "deliveries/s", seriesLine(func(s bench.Sample) float64 { return s.DeliveriesPS }))
		charts["p99.png"] = chart(timed, "p99 latency of each second's deliveries", "time (s)", "p99 (ms)", seriesLine(func(s bench.Sample) float64 { return s.P99ms }))
	}
	if len(idle) > 0 {
		charts["rss.png"] = chart(idle, "Server RSS against connections", "connections", "server RSS (MiB)", rssLine)
	}
	for name, p := range charts {
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
	}
	return nil
}

// chart draws one line per run, line giving each run's points.
func chart(runs []plotRun, title, x, y string, line func(bench.Result) plotter.XYs) *plot.Plot {
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
func latencyLine(r bench.Result) plotter.XYs {
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
func seriesLine(v func(bench.Sample) float64) func(bench.Result) plotter.XYs {
	return func(r bench.Result) plotter.XYs {
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
func rssLine(r bench.Result) plotter.XYs {
	var pts plotter.XYs
	for _, s := range r.Series {
		if s.ServerRSS > 0 {
			pts = append(pts, plotter.XY{X: float64(s.Connected), Y: float64(s.ServerRSS) / (1 << 20)})
		}
	}
	return pts
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
