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
	unwanted       atomic.Uint64
	replaysBusy    atomic.Uint64
	replaysPaced   atomic.Uint64
	backendErrors  atomic.Uint64
	backendBusy    atomic.Uint64
	userConns      atomic.Uint64
}

// Stats is a snapshot of the node's counters since New.
type Stats struct {
	Channels         int    // channels with subscribers on this node now
	Publications     uint64 // channel messages published (Publish, control or API)
	ControlErrors    uint64 // control messages answered with an error
	APIKeyFailures   uint64 // HTTP API requests answered 401
	ReplaysBusy      uint64 // subscribes with since refused for Config.MaxReplayRate (ErrReplaysBusy): its queue was full
	ReplaysPaced     uint64 // subscribes with since that waited for their turn of Config.MaxReplayRate
	BackendErrors    uint64 // backend hooks that failed: down, timed out, a bad answer (ErrBackendUnavailable)
	BackendBusy      uint64 // backend hooks refused for Proxy.MaxInflight (ErrBackendBusy)
	UserConnsRefused uint64 // upgrades refused for Config.MaxConnsPerUser
	// PresenceMembers counts the members of presence channels this node
	// tracks: its own clients and those the other nodes told it of.
	PresenceMembers int
	// BusNotesDropped counts the notes to other nodes (presence, user
	// operations) this node could not send: its queue full or the broker
	// down. The nodes repair what they lose with heartbeats.
	BusNotesDropped uint64
	// UnwantedMessages counts the messages the broker delivered here for a
	// channel with no subscriber on this node: work for nothing, about 0
	// with a broker that routes by interest (Router).
	UnwantedMessages uint64
	// WebhookEvents counts the lifecycle events this node posted (the
	// backend answered 2xx), WebhookDropped those it dropped (its queue
	// full, or a batch still failing after its retries, or refused with a
	// 4xx), WebhookRetries the batches it posted again.
	WebhookEvents, WebhookDropped, WebhookRetries uint64
	// The broker's own (BrokerStats), 0 for a broker that counts none.
	BrokerStats
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	n.chans.mu.RLock()
	chans := len(n.chans.m)
	n.chans.mu.RUnlock()
	st := Stats{
		Channels:         chans,
		Publications:     n.stats.publications.Load(),
		ControlErrors:    n.stats.controlErrors.Load(),
		APIKeyFailures:   n.stats.apiKeyFailures.Load(),
		UnwantedMessages: n.stats.unwanted.Load(),
		ReplaysBusy:      n.stats.replaysBusy.Load(),
		ReplaysPaced:     n.stats.replaysPaced.Load(),
		BackendErrors:    n.stats.backendErrors.Load(),
		BackendBusy:      n.stats.backendBusy.Load(),
		UserConnsRefused: n.stats.userConns.Load(),
		BusNotesDropped:  n.bus.dropped.Load(),
		PresenceMembers:  n.presence.tracked(),
	}
	if w := n.webhooks; w != nil {
		st.WebhookEvents, st.WebhookDropped, st.WebhookRetries = w.sent.Load(), w.dropped.Load(), w.retries.Load()
	}
	if b, ok := n.broker.(interface{ BrokerStats() BrokerStats }); ok {
		st.BrokerStats = b.BrokerStats()
	}
	return st
}

// metricTable is the one list of the node's metrics: each row ties a
// Prometheus metric to its Stats field. Adding one is a Stats field, and a
// row here.
var metricTable = [...]struct {
	name, help string
	kind       prometheus.ValueType
	value      func(*Stats) float64
}{
	{"fanout_channels", "Channels with subscribers on this node.",
		prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.Channels) }},
	{"fanout_publications_total", "Channel messages published, from clients, the HTTP API or the library.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Publications) }},
	{"fanout_control_errors_total", "Control messages answered with an error.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.ControlErrors) }},
	{"fanout_api_key_failures_total", "HTTP API requests answered 401: missing or wrong API key.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.APIKeyFailures) }},
	{"fanout_replays_busy_total", "Subscribes with since refused because 10 s of replays at the node's MaxReplayRate waited already.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.ReplaysBusy) }},
	{"fanout_replays_paced_total", "Subscribes with since that waited for their turn of the node's MaxReplayRate.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.ReplaysPaced) }},
	{"fanout_backend_errors_total", "Backend hook requests that failed: backend down, no answer within -proxy-timeout, or a bad answer.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.BackendErrors) }},
	{"fanout_backend_busy_total", "Backend hooks refused at once because -proxy-max-inflight requests were in flight.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.BackendBusy) }},
	{"fanout_user_conns_refused_total", "Upgrades refused with 429 because the user had -max-conns-per-user connections on this node.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.UserConnsRefused) }},
	{"fanout_bus_notes_dropped_total", "Notes to the other nodes (presence, user operations) not sent: queue full or broker down; heartbeats repair them.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.BusNotesDropped) }},
	{"fanout_presence_members", "Members of presence channels this node tracks, its own clients and other nodes'.",
		prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.PresenceMembers) }},
	{"fanout_webhook_events_total", "Lifecycle events this node posted to -webhook-url (answered 2xx).",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.WebhookEvents) }},
	{"fanout_webhook_events_dropped_total", "Lifecycle events dropped: the webhook queue full, or their batch failing after -webhook-retries, or refused with a 4xx.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.WebhookDropped) }},
	{"fanout_webhook_retries_total", "Webhook batches posted again after a failure, a timeout or a 5xx.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.WebhookRetries) }},
	{"fanout_broker_unwanted_messages_total", "Messages the broker delivered for channels with no subscriber on this node (about 0 with interest routing).",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.UnwantedMessages) }},
	{"fanout_broker_subscriptions", "Broker subscriptions this node holds (channels with interest routing).",
		prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.Subscriptions) }},
	{"fanout_broker_publish_round_trips_total", "Broker round trips that carried publishes; messages per round trip is fanout_broker_published_messages_total over this.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.PublishRoundTrips) }},
	{"fanout_broker_published_messages_total", "Messages carried by those round trips.",
		prometheus.CounterValue, func(s *Stats) float64 { return float64(s.PublishedMessages) }},
}

// metrics exports Stats to Prometheus at scrape time.
type metrics struct {
	n     *Node
	descs [len(metricTable)]*prometheus.Desc
}

func newMetrics(n *Node) *metrics {
	m := &metrics{n: n}
	for i, row := range metricTable {
		m.descs[i] = prometheus.NewDesc(row.name, row.help, nil, nil)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.n.Stats()
	for i, row := range metricTable {
		ch <- prometheus.MustNewConstMetric(m.descs[i], row.kind, row.value(&st))
	}
}
