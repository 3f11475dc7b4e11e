package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports the server's counters to Prometheus. The hot path only
// bumps the atomics in counters; the collector reads them at scrape time,
// so metrics add no work per delivery. The histograms are observed once
// per shard flush and once per timer sweep, not per connection.
type metrics struct {
	s         *Server
	fanout    prometheus.Histogram
	sweep     prometheus.Histogram
	open, max *prometheus.Desc
	counters  [len(counterTable)]*prometheus.Desc
	reasons   *prometheus.Desc
	perWrite  *prometheus.Desc
	recWrite  *prometheus.Desc
	compress  [3]*prometheus.Desc // frame.Deflater's counts: calls, bytes in, bytes out
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s: s,
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fanout_broadcast_flush_seconds",
			Help:    "Time from a broadcast being queued on a hub shard to its shard flush finishing every member's write.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50 us .. 1.6 s
		}),
		sweep: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fanout_timer_sweep_seconds",
			Help:    "Time each tick of the one timer sweep takes to walk every connection's deadlines and pings; grows with the connections a process holds.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16), // 10 us .. 330 ms
		}),
		open: prometheus.NewDesc("fanout_connections_open", "Open connections, handshakes included.", nil, nil),
		max:  prometheus.NewDesc("fanout_connections_max", "Connection ceiling: MaxConns capped by the open-files limit.", nil, nil),
		reasons: prometheus.NewDesc("fanout_connections_closed_total",
			"Connections closed, by reason.", []string{"reason"}, nil),
		perWrite: prometheus.NewDesc("fanout_frames_per_write",
			"Frames offered to each write syscall; rises with load as pending and queued frames share a syscall.", nil, nil),
		recWrite: prometheus.NewDesc("fanout_tls_records_per_write",
			"TLS 1.3 records in each send of sealed records: a flush's frames go out as few 16 KiB records as fit, in one send.", nil, nil),
	}
	for i, row := range counterTable {
		m.counters[i] = prometheus.NewDesc(row.metric, row.help, nil, nil)
	}
	m.compress = [3]*prometheus.Desc{
		prometheus.NewDesc("fanout_compress_calls_total", "Messages compressed; one per broadcast at most, whatever the number of receivers.", nil, nil),
		prometheus.NewDesc("fanout_compress_bytes_in_total", "Payload bytes given to the compressor.", nil, nil),
		prometheus.NewDesc("fanout_compress_bytes_out_total", "Payload bytes the compressor returned.", nil, nil),
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.open
	ch <- m.max
	for _, d := range m.counters {
		ch <- d
	}
	ch <- m.reasons
	ch <- m.perWrite
	ch <- m.recWrite
	for _, d := range m.compress {
		ch <- d
	}
	m.fanout.Describe(ch)
	m.sweep.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(st.Live))
	ch <- prometheus.MustNewConstMetric(m.max, prometheus.GaugeValue, float64(m.s.ceiling))
	for i, row := range counterTable {
		ch <- prometheus.MustNewConstMetric(m.counters[i], prometheus.CounterValue, float64(*row.stat(&st)))
	}
	ch <- perWriteHistogram(m.perWrite, st.FramesPerWrite, st.FramesOffered)
	ch <- perWriteHistogram(m.recWrite, st.RecordsPerWrite, st.TLSRecords)
	for i, v := range [3]uint64{st.CompressCalls, st.CompressBytesIn, st.CompressBytesOut} {
		ch <- prometheus.MustNewConstMetric(m.compress[i], prometheus.CounterValue, float64(v))
	}
	for r := ReasonNone + 1; r < reasonCount; r++ {
		ch <- prometheus.MustNewConstMetric(m.reasons, prometheus.CounterValue, float64(st.Closed[r.String()]), r.String())
	}
	m.fanout.Collect(ch)
	m.sweep.Collect(ch)
}

// perWriteHistogram turns Stats.FramesPerWrite (or RecordsPerWrite) into a
// cumulative histogram.
func perWriteHistogram(d *prometheus.Desc, counts [writeBuckets]uint64, offered uint64) prometheus.Metric {
	buckets := make(map[float64]uint64, writeBuckets)
	var total uint64
	for i, n := range counts {
		total += n
		buckets[float64(uint(1)<<i)] = total
	}
	return prometheus.MustNewConstHistogram(d, total, float64(offered), buckets)
}
