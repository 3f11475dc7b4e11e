package bench

import (
	"fmt"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is every figure of one run, with its configuration. Its JSON keys
// are snake_case with the unit in the name.
type Result struct {
	Config              Config     `json:"config"`
	Processes           int        `json:"processes"` // load generator processes used
	Connected           int        `json:"connected"`
	DialErrors          int        `json:"dial_errors"`
	RampS               float64    `json:"ramp_s"`
	Sent                int64      `json:"sent"`             // broadcast: messages published (all publishers); echo: messages sent; churn: handshakes
	Deliveries          int64      `json:"deliveries"`       // broadcast: messages received by subscribers; echo: replies
	DeliveriesPS        float64    `json:"deliveries_per_s"` // per second of measurement (echo: round trips/s; churn: handshakes/s)
	Missing             int64      `json:"missing"`          // broadcast: Sent*subscribers - Deliveries; echo: Sent - Deliveries
	Lost                int64      `json:"lost"`             // sequence gaps seen by subscribers
	Reordered           int64      `json:"reordered"`
	Disconnected        int64      `json:"disconnected"`                           // connections the server closed
	Failed              int64      `json:"failed"`                                 // churn: failed handshakes
	Misrouted           int64      `json:"misrouted,omitempty"`                    // channel mode: deliveries of a channel the subscriber is not on
	Malformed           int64      `json:"malformed,omitempty"`                    // channel mode: message frames the generator could not read
	WireBytes           float64    `json:"wire_bytes_per_delivery,omitempty"`      // bytes subscribers read per delivery while measuring: frames as they went on the wire
	PublishedPS         float64    `json:"published_per_s,omitempty"`              // broadcast: messages published per second of measurement
	TargetPS            float64    `json:"target_per_s,omitempty"`                 // broadcast: publishes per second asked for (Rate x streams)
	PublishErrors       int64      `json:"publish_errors,omitempty"`               // channel mode: messages refused (API status, WebSocket error reply) or failed
	Requests            int64      `json:"api_requests,omitempty"`                 // API: requests answered with results (200, or 503 for a batch refused in part)
	APIDelivered        int64      `json:"api_delivered,omitempty"`                // API: sum of the "delivered" counts in the answers
	APIP50ms            float64    `json:"api_p50_ms,omitempty"`                   // API: request round trip percentiles as the publisher saw them
	APIP99ms            float64    `json:"api_p99_ms,omitempty"`                   //
	APIMaxMS            float64    `json:"api_max_ms,omitempty"`                   //
	P50ms               float64    `json:"p50_ms"`                                 // delivery latency (echo: round trip; churn: handshake)
	P90ms               float64    `json:"p90_ms"`                                 //
	P99ms               float64    `json:"p99_ms"`                                 //
	P999ms              float64    `json:"p99_9_ms"`                               //
	MaxMS               float64    `json:"max_ms"`                                 //
	Percentiles         []Point    `json:"percentiles,omitempty"`                  // the HDR histogram's percentile distribution
	ServerRSSBase       int64      `json:"server_rss_base_bytes"`                  // all sampled servers, before connecting
	ServerRSS           int64      `json:"server_rss_bytes"`                       // after the ramp and settle
	ServerRSSEnd        int64      `json:"server_rss_end_bytes"`                   // after measuring (and draining)
	ServerRSSPeak       int64      `json:"server_rss_peak_bytes"`                  // the sampled servers' peak RSS (VmHWM) at the end
	RSSPerConn          float64    `json:"rss_per_conn_bytes"`                     // (ServerRSS-ServerRSSBase)/Connected
	ServerCPU           float64    `json:"server_cpu_cores"`                       // server CPU seconds per second while measuring (and draining)
	ServerCPUS          float64    `json:"server_cpu_s"`                           // server CPU seconds over that window
	CPUPerDeliv         float64    `json:"server_cpu_us_per_delivery"`             // ServerCPUS / Deliveries, in microseconds
	GeneratorCPU        float64    `json:"generator_cpu_cores"`                    // this process's CPU seconds per second while measuring (workers not included)
	GeneratorRSSPerConn float64    `json:"generator_rss_per_conn_bytes,omitempty"` // the generator's RSS growth over the ramp per connection, its worker processes' whole RSS (Go runtime included) counted in
	MachinePerConn      float64    `json:"machine_per_conn_bytes,omitempty"`       // the machine's memory in use (MemTotal - MemAvailable) grown over the ramp, per connection: both ends, kernel included
	SlabPerConn         float64    `json:"kernel_slab_per_conn_bytes,omitempty"`   // the kernel slab grown over the ramp, per connection (two sockets each on loopback)
	MachineCPU          float64    `json:"machine_cpu_cores"`                      // all cores' busy seconds per second while measuring: what is not server or generator is other load
	BrokerCPU           float64    `json:"broker_cpu_cores,omitempty"`             // Config.BrokerPIDs' CPU seconds per second while measuring (part of MachineCPU, not of ServerCPU)
	BrokerRSSEnd        int64      `json:"broker_rss_end_bytes,omitempty"`         // Config.BrokerPIDs' RSS after measuring
	Writes              *WritePath `json:"write_path,omitempty"`                   // from Config.MetricsURL
	Series              []Sample   `json:"series,omitempty"`                       // one sample per second of the whole run
	Clean               *Result    `json:"clean,omitempty"`                        // slow: the clean run it is compared with
	Storm               *Storm     `json:"storm,omitempty"`                        // broadcast with Config.Churners: the reconnect storm beside the deliveries

	pub pubReport
}

// Storm is what a broadcast's churners did while the publishers sent:
// each opened a connection (TCP, TLS over wss, WebSocket upgrade) and
// closed it, again and again. The deliveries' latency in the same Result
// is the established subscribers' during the storm.
type Storm struct {
	Churners     int     `json:"churners"`
	Handshakes   int64   `json:"handshakes"`       // connections opened and closed
	HandshakesPS float64 `json:"handshakes_per_s"` // per second of publishing
	Failed       int64   `json:"failed"`
	P50ms        float64 `json:"p50_ms"` // connect to 101, as a churner waited for it
	P99ms        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
}

// newStorm summarises the churners' merged snapshot s.
func newStorm(cfg Config, s *snapshot) *Storm {
	st := &Storm{Churners: cfg.Churners, Handshakes: s.Sent, Failed: s.Failed, HandshakesPS: float64(s.Sent) / cfg.Duration.Seconds()}
	if s.Hist != nil {
		if h := hdrhistogram.Import(s.Hist); h.TotalCount() > 0 {
			st.P50ms, st.P99ms, st.MaxMS = float64(h.ValueAtQuantile(50))/1000, float64(h.ValueAtQuantile(99))/1000, float64(h.Max())/1000
		}
	}
	return st
}

// Point is one line of an HDR percentile distribution: Count of the
// recorded values are at most Ms.
type Point struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
	Count      int64   `json:"count"`
}

// percentiles is h's distribution, 5 points per halving of the remainder
// (50, 75, 87.5, ...% as HdrHistogram prints it).
func percentiles(h *hdrhistogram.Histogram) []Point {
	var ps []Point
	for _, b := range h.CumulativeDistributionWithTicks(5) {
		ps = append(ps, Point{Percentile: b.Quantile, Ms: float64(b.ValueAt) / 1000, Count: b.Count})
	}
	return ps
}

// Markdown tables: the header matches the rows MarkdownRow writes for the
// same kind of run.
const (
	idleHeader    = "| server | conns | RSS before | RSS after | RSS/conn | server CPU (cores) |\n|---|---|---|---|---|---|"
	channelHeader = "| server | subscribers | channels | publish via | payload | msg/s per channel | published/s | deliveries/s | missing | p50 | p90 | p99 | p99.9 | max | server RSS at the end | server CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	roomHeader    = "| server | conns | payload | msg/s | deliveries/s | missing | p50 | p99 | p99.9 | max | server CPU (cores) | server CPU/delivery | writes/delivery |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)

// MarkdownHeader is the header and separator lines of the table r's
// MarkdownRow belongs to.
func (r Result) MarkdownHeader() string {
	switch {
	case r.Config.Scenario == ScenarioIdle:
		return idleHeader
	case r.Config.Channels > 0:
		return channelHeader
	}
	return roomHeader
}

// MarkdownRow is the result as one row of the table MarkdownHeader heads.
// The "msg/s" column is per publisher for broadcast and in all for echo
// ("closed" in closed loop); deliveries/s are round trips/s for echo and
// handshakes/s for churn.
func (r Result) MarkdownRow(label string) string {
	ms := func(v float64) string { return fmt.Sprintf("%.2f ms", v) }
	switch {
	case r.Config.Scenario == ScenarioIdle:
		return fmt.Sprintf("| %s | %d | %.0f MiB | %.0f MiB | %.0f B | %.2f |", label, r.Connected,
			float64(r.ServerRSSBase)/(1<<20), float64(r.ServerRSS)/(1<<20), r.RSSPerConn, r.ServerCPU)
	case r.Config.Channels > 0:
		return fmt.Sprintf("| %s | %d | %d | %s | %d B | %g | %.0f | %.0f | %d | %s | %s | %s | %s | %s | %.0f MiB | %.2f |",
			label, r.Connected, r.Config.Channels, r.Config.publishVia(), r.Config.Size, r.Config.Rate, r.PublishedPS,
			r.DeliveriesPS, r.Missing, ms(r.P50ms), ms(r.P90ms), ms(r.P99ms), ms(r.P999ms), ms(r.MaxMS),
			float64(r.ServerRSSEnd)/(1<<20), r.ServerCPU)
	}
	rate := fmt.Sprintf("%g", r.Config.Rate)
	if r.Config.ClosedLoop {
		rate = "closed"
	}
	writes := "-"
	if r.Writes != nil {
		writes = fmt.Sprintf("%.3f", r.Writes.WritesPerDelivery)
	}
	return fmt.Sprintf("| %s | %d | %d B | %s | %.0f | %d | %s | %s | %s | %s | %.2f | %.2f µs | %s |", label, r.Connected, r.Config.Size,
		rate, r.DeliveriesPS, r.Missing, ms(r.P50ms), ms(r.P99ms), ms(r.P999ms), ms(r.MaxMS), r.ServerCPU, r.CPUPerDeliv, writes)
}

// Summary is one plain line of what a table row does not show: the
// publishers' achieved rate, errors, order and CPU split.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, delivered %d (%.0f/s), missing %d, lost %d, reordered %d, disconnected %d; CPU (cores): server %.2f (%.1f s), generator %.2f, machine %.2f",
		r.Sent, r.Deliveries, r.DeliveriesPS, r.Missing, r.Lost, r.Reordered, r.Disconnected, r.ServerCPU, r.ServerCPUS, r.GeneratorCPU, r.MachineCPU)
	if r.TargetPS > 0 {
		fmt.Fprintf(&b, "; published %.0f/s of %.0f/s asked", r.PublishedPS, r.TargetPS)
	}
	if s := r.Storm; s != nil {
		fmt.Fprintf(&b, "; storm: %d churners, %.0f handshakes/s (%d failed), handshake p50 %.1f ms p99 %.1f ms", s.Churners, s.HandshakesPS, s.Failed, s.P50ms, s.P99ms)
	}
	if r.GeneratorRSSPerConn > 0 {
		fmt.Fprintf(&b, "; generator RSS %.0f B/conn", r.GeneratorRSSPerConn)
	}
	if r.MachinePerConn > 0 {
		fmt.Fprintf(&b, "; machine memory +%.0f B/conn (kernel slab +%.0f)", r.MachinePerConn, r.SlabPerConn)
	}
	if w := r.Writes; w != nil {
		fmt.Fprintf(&b, "; server writes: %s", w)
	}
	return b.String()
}

// publishVia names how publishers reach the server: "ws", "http" or
// "http batch N".
func (c Config) publishVia() string {
	switch {
	case c.PublishURL == "":
		return "ws"
	case c.Batch > 1:
		return fmt.Sprintf("http batch %d", c.Batch)
	}
	return "http"
}
