package rabbitmq

// Hostile clients and bounds (issue 24, findings 1, 2, 5 and 12; issue 18)
// against a real rabbitmq-server.

import (
	"context"
	"strings"
	"testing"

	"github.com/fanout-ws/fanout/server/pubsub"
)

// The history a node keeps is bounded by BrokerOptions.HistoryMaxBytes
// (-history-max-bytes), as with every broker: the oldest messages go
// first, and a URL that still sets the old parameter is refused.
func TestHostile_HistoryMaxBytes(t *testing.T) {
	t.Parallel()
	const budget, size, n = 64 << 10, 2000, 100
	url := streamURL(t)
	b := startBroker(t, url, pubsub.BrokerOptions{HistorySize: 1000, HistoryMaxBytes: budget})
	waitBrokers(t, b)
	data := []byte(`"` + strings.Repeat("x", size-2) + `"`)
	for range n {
		if _, err := b.Publish(context.Background(), "c", data); err != nil {
			t.Fatal(err)
		}
	}
	top, msgs, err := b.History(context.Background(), "c", 0, 1000)
	if err != nil || top.Offset != n || len(msgs) == 0 || msgs[len(msgs)-1].Offset != n {
		t.Fatalf("history: %+v, %d messages, %v; want up to offset %d", top, len(msgs), err, n)
	}
	if kept := len(msgs) * (size + entryOverhead); kept > budget {
		t.Fatalf("history keeps %d messages, %d B, budget %d B", len(msgs), kept, budget)
	}
	if _, err := New(url+"&history-max-bytes=1000", pubsub.BrokerOptions{}); err == nil || !strings.Contains(err.Error(), "-history-max-bytes") {
		t.Fatalf("a URL with history-max-bytes: %v, want a refusal that names the flag", err)
	}
}
