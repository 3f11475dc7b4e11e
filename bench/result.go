package bench

import "fmt"

// MarkdownRow is the result as one row of BENCHMARKS.md's tables. Idle:
// server | conns | RSS before | RSS after | RSS/conn | server CPU.
// Otherwise: server | conns | payload | rate | per second | missing | p50 |
// p99 | p99.9 | max | server CPU.
func (r Result) MarkdownRow(label string) string {
	if r.Config.Scenario == ScenarioIdle {
		return fmt.Sprintf("| %s | %d | %.0f MiB | %.0f MiB | %.0f B | %.2f |", label, r.Connected,
			float64(r.ServerRSSBase)/(1<<20), float64(r.ServerRSS)/(1<<20), r.RSSPerConn, r.ServerCPU)
	}
	ms := func(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }
	return fmt.Sprintf("| %s | %d | %d B | %.0f | %.0f | %d | %s | %s | %s | %s | %.2f |", label, r.Connected, r.Config.Size,
		r.Config.Rate, r.DeliveriesPS, r.Missing, ms(r.P50us), ms(r.P99us), ms(r.P999us), ms(r.MaxUS), r.ServerCPU)
}
