package bench

import "fmt"

// MarkdownRow is the result as one row of BENCHMARKS.md's tables. Idle:
// server | conns | RSS before | RSS after | RSS/conn | server CPU.
// Broadcast with Channels: server | subscribers | channels | publish via |
// payload | msg/s per channel | published/s | deliveries/s | missing | p50
// | p90 | p99 | p99.9 | max | server RSS at the end | server CPU.
// Otherwise: server | conns | payload | rate | per second | missing | p50 |
// p99 | p99.9 | max | server CPU.
func (r Result) MarkdownRow(label string) string {
	ms := func(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }
	switch {
	case r.Config.Scenario == ScenarioIdle:
		return fmt.Sprintf("| %s | %d | %.0f MiB | %.0f MiB | %.0f B | %.2f |", label, r.Connected,
			float64(r.ServerRSSBase)/(1<<20), float64(r.ServerRSS)/(1<<20), r.RSSPerConn, r.ServerCPU)
	case r.Config.Channels > 0:
		return fmt.Sprintf("| %s | %d | %d | %s | %d B | %g | %.0f | %.0f | %d | %s | %s | %s | %s | %s | %.0f MiB | %.2f |",
			label, r.Connected, r.Config.Channels, r.Config.publishVia(), r.Config.Size, r.Config.Rate, r.PublishedPS,
			r.DeliveriesPS, r.Missing, ms(r.P50us), ms(r.P90us), ms(r.P99us), ms(r.P999us), ms(r.MaxUS),
			float64(r.ServerRSSEnd)/(1<<20), r.ServerCPU)
	}
	return fmt.Sprintf("| %s | %d | %d B | %.0f | %.0f | %d | %s | %s | %s | %s | %.2f |", label, r.Connected, r.Config.Size,
		r.Config.Rate, r.DeliveriesPS, r.Missing, ms(r.P50us), ms(r.P99us), ms(r.P999us), ms(r.MaxUS), r.ServerCPU)
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
