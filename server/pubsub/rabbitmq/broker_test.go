package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
)

// bnode is a broker started with a deliver that records.
type bnode struct {
	*Broker
	got     chan pubsub.Message
	resyncs chan struct{}
}

func startBroker(t *testing.T, url string, o pubsub.BrokerOptions) *bnode {
	t.Helper()
	o.Logger = testLogger()
	b, err := New(url, o)
	if err != nil {
		t.Fatal(err)
	}
	n := &bnode{Broker: b, got: make(chan pubsub.Message, 10000), resyncs: make(chan struct{}, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := b.Start(ctx, func(m pubsub.Message) { n.got <- m }, func() { n.resyncs <- struct{}{} })
	t.Cleanup(func() { cancel(); <-stopped })
	return n
}

// testLogger shows the brokers' logs when RABBITMQ_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RABBITMQ_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func streamURL(t *testing.T) string {
	return rmq.URL(strings.NewReplacer("/", "-", "#", "-").Replace(t.Name()) + "-" + pubsub.NewEpoch())
}

func waitBrokers(t *testing.T, nodes ...*bnode) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		for i, n := range nodes {
			if !n.Ready() {
				return fmt.Errorf("broker %d not ready", i)
			}
		}
		return nil
	})
}

func next(t *testing.T, n *bnode) pubsub.Message {
	t.Helper()
	select {
	case m := <-n.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery in 10 s")
		return pubsub.Message{}
	}
}

// Publishes from three brokers on one stream get gap-free offsets in one
// epoch, and every broker delivers all of them in the same order.
func TestBroker_SameOrderOnEveryNode(t *testing.T) {
	t.Parallel()
	url := streamURL(t)
	nodes := []*bnode{startBroker(t, url, pubsub.BrokerOptions{}), startBroker(t, url, pubsub.BrokerOptions{}), startBroker(t, url, pubsub.BrokerOptions{})}
	waitBrokers(t, nodes...)
	ctx := context.Background()
	var epoch string
	for i := 1; i <= 30; i++ {
		p, err := nodes[i%3].Publish(ctx, "c", fmt.Appendf(nil, "%d", i))
		if err != nil || p.Offset != uint64(i) || epoch != "" && p.Epoch != epoch {
			t.Fatalf("publish %d: %+v %v", i, p, err)
		}
		epoch = p.Epoch
	}
	for i, n := range nodes {
		for off := uint64(1); off <= 30; off++ {
			if m := next(t, n); m.Offset != off || m.Epoch != epoch || string(m.Data) != fmt.Sprint(off) {
				t.Fatalf("node %d: got %+v, want offset %d", i, m, off)
			}
		}
	}
}

// Two brokers publishing on one channel at once contend for every offset:
// the losers propose again, and the result is still gap-free and the same
// on both. A broker started afterwards rebuilds the same history from the
// stream.
func TestBroker_ConcurrentPublishers(t *testing.T) {
	t.Parallel()
	url := streamURL(t)
	o := pubsub.BrokerOptions{HistorySize: 1000}
	nodes := []*bnode{startBroker(t, url, o), startBroker(t, url, o)}
	waitBrokers(t, nodes...)
	const per = 200
	errs := make(chan error, 2)
	for i, n := range nodes {
		go func() {
			for j := range per {
				if _, err := n.Publish(context.Background(), "c", fmt.Appendf(nil, `"%d-%d"`, i, j)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes { // every proposal is a round trip, a lost one too
		if st := n.BrokerStats(); st.Subscriptions != 1 || st.PublishRoundTrips < per || st.PublishedMessages != st.PublishRoundTrips {
			t.Errorf("node %d: %+v, want the stream's subscription and at least %d proposals", i, st, per)
		}
	}
	var want []pubsub.Message
	for off := uint64(1); off <= 2*per; off++ {
		m := next(t, nodes[0])
		if m.Offset != off {
			t.Fatalf("node 0: got %+v, want offset %d", m, off)
		}
		if m2 := next(t, nodes[1]); m2.Offset != off || string(m2.Data) != string(m.Data) {
			t.Fatalf("node 1 got %+v, node 0 %+v", m2, m)
		}
		want = append(want, m)
	}
	late := startBroker(t, url, o)
	waitBrokers(t, late)
	top, msgs, err := late.History(context.Background(), "c", 2*per-10, 100)
	if err != nil || top.Offset != 2*per || top.Epoch != want[0].Epoch || len(msgs) != 10 {
		t.Fatalf("late history: %+v, %d messages, %v", top, len(msgs), err)
	}
	for i, m := range msgs {
		if w := want[2*per-10+i]; m.Offset != w.Offset || string(m.Data) != string(w.Data) {
			t.Fatalf("late history %d: %+v, want %+v", i, m, w)
		}
	}
}
