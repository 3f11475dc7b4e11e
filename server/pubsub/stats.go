package pubsub

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters are the node's counters: plain atomics, read by Stats.
type counters struct {
	publications   atomic.Uint64
	controlErrors  atomic.Uint64
	apiKeyFailures atomic.Uint64
	replaysBusy    atomic.Uint64
}

// Stats is a snapshot of the node's counters since New.
type Stats struct {
	Channels       int    // channels with subscribers on this node now
	Publications   uint64 // channel messages published (Publish, control or API)
	ControlErrors  uint64 // control messages answered with an error
	APIKeyFailures uint64 // HTTP API requests answered 401
	ReplaysBusy    uint64 // subscribes with since refused for Config.MaxReplayRate (ErrReplaysBusy)
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	n.chans.mu.RLock()
	chans := len(n.chans.m)
	n.chans.mu.RUnlock()
	return Stats{
		Channels:       chans,
		Publications:   n.stats.publications.Load(),
		ControlErrors:  n.stats.controlErrors.Load(),
		APIKeyFailures: n.stats.apiKeyFailures.Load(),
		ReplaysBusy:    n.stats.replaysBusy.Load(),
	}
}

// metrics exports Stats to Prometheus at scrape time.
type metrics struct {
	n                                                       *Node
	channels, publications, controlErrors, api, replaysBusy *prometheus.Desc
}

func newMetrics(n *Node) *metrics {
	return &metrics{
		n:             n,
		channels:      prometheus.NewDesc("fanout_channels", "Channels with subscribers on this node.", nil, nil),
		publications:  prometheus.NewDesc("fanout_publications_total", "Channel messages published, from clients, the HTTP API or the library.", nil, nil),
		controlErrors: prometheus.NewDesc("fanout_control_errors_total", "Control messages answered with an error.", nil, nil),
		api:           prometheus.NewDesc("fanout_api_key_failures_total", "HTTP API requests answered 401: missing or wrong API key.", nil, nil),
		replaysBusy:   prometheus.NewDesc("fanout_replays_busy_total", "Subscribes with since refused because the node replayed history at its MaxReplayRate.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.channels
	ch <- m.publications
	ch <- m.controlErrors
	ch <- m.api
	ch <- m.replaysBusy
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.n.Stats()
	ch <- prometheus.MustNewConstMetric(m.channels, prometheus.GaugeValue, float64(st.Channels))
	ch <- prometheus.MustNewConstMetric(m.publications, prometheus.CounterValue, float64(st.Publications))
	ch <- prometheus.MustNewConstMetric(m.controlErrors, prometheus.CounterValue, float64(st.ControlErrors))
	ch <- prometheus.MustNewConstMetric(m.api, prometheus.CounterValue, float64(st.APIKeyFailures))
	ch <- prometheus.MustNewConstMetric(m.replaysBusy, prometheus.CounterValue, float64(st.ReplaysBusy))
}
