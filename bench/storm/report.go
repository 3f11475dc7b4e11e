package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The survivors' counters the report reads (server/stats.go).
var scraped = []string{
	"fanout_handshakes_upgraded_total",
	"fanout_handshakes_over_rate_total",
	"fanout_handshakes_over_capacity_total",
	"fanout_handshakes_rejected_ip_total",
	"fanout_replays_busy_total",
}

// scrape sums the scraped counters over the admin listeners.
func scrape(admins []string) map[string]float64 {
	sum := map[string]float64{}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, a := range admins {
		resp, err := hc.Get("http://" + a + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			name, value, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			for _, want := range scraped {
				if name == want {
					v, _ := strconv.ParseFloat(value, 64)
					sum[name] += v
				}
			}
		}
		resp.Body.Close()
	}
	return sum
}

// sampler scrapes the survivors' upgrades every 250 ms for the peak rate.
type sampler struct {
	done chan struct{}
	peak chan float64
}

func startSampler(admins []string) *sampler {
	s := &sampler{done: make(chan struct{}), peak: make(chan float64, 1)}
	go func() {
		peak := 0.0
		prev, at := scrape(admins)["fanout_handshakes_upgraded_total"], time.Now()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-tick.C:
			}
			v, now := scrape(admins)["fanout_handshakes_upgraded_total"], time.Now()
			peak = max(peak, (v-prev)/now.Sub(at).Seconds())
			prev, at = v, now
		}
	}()
	return s
}

func (s *sampler) stop() float64 {
	close(s.done)
	return <-s.peak
}

// result is the run's report.
type result struct {
	Event              string           `json:"event"`
	Clients            int              `json:"clients"`
	Nodes              int              `json:"nodes"`
	Rate               float64          `json:"publish_rate"`
	ConnectSeconds     float64          `json:"connect_seconds"`
	Dropped            int              `json:"dropped"`
	BackSeconds        float64          `json:"back_seconds"`
	BackError          string           `json:"back_error,omitempty"`
	UpgradesPerSec     float64          `json:"survivor_upgrades_per_sec"`
	PeakUpgradesPerSec float64          `json:"survivor_peak_upgrades_per_sec"`
	SurvivorRefusals   float64          `json:"survivor_refusals"`
	ReplaysBusy        float64          `json:"survivor_replays_busy"`
	ClientRefused      int64            `json:"client_refused"`
	ClientFailed       int64            `json:"client_failed_connects"`
	Closes             map[string]int64 `json:"closes"`
	HintsUsed          int64            `json:"hints_used"`
	P50BeforeMs        float64          `json:"p50_before_ms"`
	P99BeforeMs        float64          `json:"p99_before_ms"`
	P50StormMs         float64          `json:"p50_storm_ms"`
	P99StormMs         float64          `json:"p99_storm_ms"`
	P99AfterMs         float64          `json:"p99_after_ms"`
	Deliveries         [phases]int64    `json:"deliveries_before_storm_after"`
	Published          uint64           `json:"published"`
	Missing            uint64           `json:"missing"`
	Duplicates         uint64           `json:"duplicates_dropped"`
	Gaps               int64            `json:"gap_notices"`
}

func report(r *run, cs []*client, final uint64, at, end map[string]float64, peak float64, connected, back time.Duration, backErr error) result {
	res := result{Event: r.cfg.event, Clients: len(cs), Nodes: len(r.cfg.nodes), Rate: r.cfg.rate,
		ConnectSeconds: connected.Seconds(), BackSeconds: back.Seconds(), PeakUpgradesPerSec: peak,
		ClientRefused: r.refused.Load(), ClientFailed: r.failed.Load(), Closes: r.closeCounts(), HintsUsed: r.hintsUsed.Load(), Published: final}
	if backErr != nil {
		res.BackError = backErr.Error()
	}
	delta := func(name string) float64 { return end[name] - at[name] }
	res.UpgradesPerSec = delta("fanout_handshakes_upgraded_total") / max(back.Seconds(), 1e-3)
	res.SurvivorRefusals = delta("fanout_handshakes_over_rate_total") + delta("fanout_handshakes_over_capacity_total") + delta("fanout_handshakes_rejected_ip_total")
	res.ReplaysBusy = delta("fanout_replays_busy_total")
	ms := func(phase int, q float64) float64 { return float64(r.lat.merged(phase).ValueAtQuantile(q)) / 1000 }
	res.P50BeforeMs, res.P99BeforeMs = ms(phaseBefore, 50), ms(phaseBefore, 99)
	res.P50StormMs, res.P99StormMs, res.P99AfterMs = ms(phaseStorm, 50), ms(phaseStorm, 99), ms(phaseAfter, 99)
	for p := range res.Deliveries {
		res.Deliveries[p] = r.lat.merged(p).TotalCount()
	}
	for _, c := range cs {
		if c.dropped.Load() != 0 {
			res.Dropped++
		}
		res.Missing += c.missing.Load()
		if last := c.lastSeen.Load(); last < final {
			res.Missing += final - last
		}
		res.Duplicates += c.dups.Load()
		res.Gaps += c.gaps.Load()
	}
	return res
}

// write prints the JSON, then one Markdown table row under its header.
func (res result) write(w io.Writer) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n\n", b)
	fmt.Fprintln(w, "| event | clients | dropped | all back (s) | survivor upgrades/s (avg, peak) | refusals (survivors, clients) | p99 before (ms) | p99 storm (ms) | missing | dups dropped |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	_, err = fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.0f, %.0f | %.0f, %d | %.1f | %.1f | %d | %d |\n", res.Event, res.Clients, res.Dropped,
		res.BackSeconds, res.UpgradesPerSec, res.PeakUpgradesPerSec, res.SurvivorRefusals, res.ClientRefused, res.P99BeforeMs, res.P99StormMs, res.Missing, res.Duplicates)
	return err
}
