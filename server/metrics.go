package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports the server's counters to Prometheus. The hot path only
// bumps the atomics in counters; the collector reads them at scrape time,
// so metrics add no work per delivery. The one histogram is observed once
// per shard flush, not per connection.
type metrics struct {
	s        *Server
	fanout   prometheus.Histogram
	descs    map[string]*prometheus.Desc
	reasons  *prometheus.Desc
	perWrite *prometheus.Desc
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s: s,
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fanout_broadcast_flush_seconds",
			Help:    "Time from a broadcast being queued on a hub shard to its shard flush finishing every member's write.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50 us .. 1.6 s
		}),
		descs: map[string]*prometheus.Desc{},
		reasons: prometheus.NewDesc("fanout_connections_closed_total",
			"Connections closed, by reason.", []string{"reason"}, nil),
		perWrite: prometheus.NewDesc("fanout_frames_per_write",
			"Frames offered to each writev; rises with load as pending and queued frames share a syscall.", nil, nil),
	}
	for name, help := range map[string]string{
		"fanout_connections_open":               "Open connections, handshakes included.",
		"fanout_connections_max":                "Connection ceiling: MaxConns capped by the open-files limit.",
		"fanout_connections_accepted_total":     "Sockets accepted or hijacked.",
		"fanout_handshakes_upgraded_total":      "Completed WebSocket handshakes.",
		"fanout_handshakes_failed_total":        "Bad, rejected or timed-out upgrade requests.",
		"fanout_handshakes_over_capacity_total": "Upgrade requests answered 503 because of MaxConns.",
		"fanout_messages_in_total":              "Text and binary messages received.",
		"fanout_bytes_in_total":                 "Bytes read from sockets after the handshake.",
		"fanout_frames_out_total":               "Frames fully written to sockets (deliveries).",
		"fanout_bytes_out_total":                "Bytes written to sockets.",
		"fanout_write_syscalls_total":           "writev calls; below frames_out when queued frames coalesce.",
		"fanout_broadcasts_total":               "Hub broadcasts (each serialized once).",
		"fanout_broadcast_drops_total":          "Broadcast frames a hub shard refused because its backlog was full.",
		"fanout_slow_consumer_evictions_total":  "Connections closed because their send queue passed SendQueueBytes.",
		"fanout_pool_saturated_total":           "Events that found a worker pool busy.",
		"fanout_connection_errors_total":        "Connection errors reported to OnError.",
		"fanout_rate_limited_total":             "Messages over a connection's message or byte rate.",
		"fanout_handshakes_rejected_ip_total":   "Upgrades answered 429 by the per-IP connection or handshake limits.",
		"fanout_auth_failures_total":            "Upgrades answered 401: missing, malformed, expired or wrongly signed tokens.",
		"fanout_invalid_messages_total":         "Messages refused by the application's validator (closed with 1008).",
		"fanout_publishers_paused_total":        "Read tasks that stopped reading a connection because a hub it belongs to was behind (TCP backpressure).",
	} {
		m.descs[name] = prometheus.NewDesc(name, help, nil, nil)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
	ch <- m.reasons
	ch <- m.perWrite
	m.fanout.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	gauge := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.GaugeValue, v)
	}
	counter := func(name string, v uint64) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.CounterValue, float64(v))
	}
	gauge("fanout_connections_open", float64(st.Live))
	gauge("fanout_connections_max", float64(m.s.ceiling))
	counter("fanout_connections_accepted_total", st.Accepted)
	counter("fanout_handshakes_upgraded_total", st.Upgraded)
	counter("fanout_handshakes_failed_total", st.HandshakesFailed)
	counter("fanout_handshakes_over_capacity_total", st.RejectedCapacity)
	counter("fanout_messages_in_total", st.MessagesIn)
	counter("fanout_bytes_in_total", st.BytesIn)
	counter("fanout_frames_out_total", st.FramesOut)
	counter("fanout_bytes_out_total", st.BytesOut)
	counter("fanout_write_syscalls_total", st.WriteCalls)
	counter("fanout_broadcasts_total", st.Broadcasts)
	counter("fanout_broadcast_drops_total", st.BroadcastDrops)
	counter("fanout_slow_consumer_evictions_total", st.SlowConsumers)
	counter("fanout_pool_saturated_total", st.PoolSaturated)
	counter("fanout_connection_errors_total", st.Errors)
	counter("fanout_rate_limited_total", st.RateLimited)
	counter("fanout_handshakes_rejected_ip_total", st.RejectedIP)
	counter("fanout_auth_failures_total", st.AuthFailures)
	counter("fanout_invalid_messages_total", st.InvalidMessages)
	counter("fanout_publishers_paused_total", st.PublishersPaused)
	ch <- framesPerWrite(m.perWrite, st.FramesPerWrite, st.FramesOffered)
	for r := ReasonNone + 1; r < reasonCount; r++ {
		ch <- prometheus.MustNewConstMetric(m.reasons, prometheus.CounterValue, float64(st.Closed[r.String()]), r.String())
	}
	m.fanout.Collect(ch)
}

// framesPerWrite turns Stats.FramesPerWrite into a cumulative histogram.
func framesPerWrite(d *prometheus.Desc, counts [writeBuckets]uint64, offered uint64) prometheus.Metric {
	buckets := make(map[float64]uint64, writeBuckets)
	var total uint64
	for i, n := range counts {
		total += n
		buckets[float64(uint(1)<<i)] = total
	}
	return prometheus.MustNewConstHistogram(d, total, float64(offered), buckets)
}
