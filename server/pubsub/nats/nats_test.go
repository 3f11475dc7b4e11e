package nats

import (
	"fmt"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/nats/natstest"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/nats-io/nats.go"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// The NATS broker passes the conformance suite, each scenario on a
// nats-server of its own. Nodes that start together make their streams at
// once: with jetstream's CreateOrUpdateStream that crashed nats-server
// 2.9.10 about once in ten CI runs ("node 0 not ready", or a gap notice
// after a restart), hence Broker.createOrUpdate.
func TestNATS_Conformance(t *testing.T) {
	pubsubtest.Run(t, pubsubtest.Suite{Deploy: func(t *testing.T) pubsubtest.Deployment {
		s := natstest.Start(t)
		return pubsubtest.Deployment{
			Broker: func(t *testing.T, o pubsub.BrokerOptions) pubsub.Broker {
				b, err := New(s.URL(), o)
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			Stop:  func(*testing.T) { s.Stop() },
			Start: func(*testing.T) { s.Start() },
			Wipe:  func(*testing.T) { s.Wipe() },
			PublishExternal: func(t *testing.T, channel, data string) { // core NATS: no offset, no history
				nc, err := nats.Connect(s.URL())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if err := nc.Publish("fanout.msg."+key(channel), []byte(data)); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

// Each node holds a subscription for its own channels only: no node
// receives a message none of its clients wanted, and a node that leaves a
// channel gives its subscription back.
func TestNATS_InterestRouting(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	var nodes []*pubsubtest.Node
	for range 2 {
		b, err := New(s.URL(), pubsub.BrokerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, pubsubtest.Serve(t, server.Config{}, pubsub.Config{Broker: b}))
	}
	pubsubtest.WaitReady(t, 10*time.Second, nodes...)
	subs := []*pubsubtest.Client{nodes[0].Dial(t, "?channel=left"), nodes[1].Dial(t, "?channel=right")}
	for _, c := range subs {
		if e := c.Read(); e.Type != "subscribed" {
			t.Fatalf("got %+v", e)
		}
	}
	for i := 1; i <= 20; i++ {
		for _, ch := range []string{"left", "right"} {
			if p, err := nodes[0].Publish(ch, []byte(`"m"`)); err != nil || p.Offset != uint64(i) {
				t.Fatalf("publish %s %d: %+v %v", ch, i, p, err)
			}
		}
	}
	for _, c := range subs {
		for off := uint64(1); off <= 20; off++ {
			if e := c.Read(); e.Type != "message" || e.Offset != off {
				t.Fatalf("got %+v, want offset %d", e, off)
			}
		}
	}
	for i, n := range nodes {
		if st := n.Stats(); st.UnwantedMessages != 0 || st.Subscriptions != 2 { // its channel, and the node bus
			t.Errorf("node %d: %d unwanted messages, %d subscriptions; want 0 and 2", i, st.UnwantedMessages, st.Subscriptions)
		}
	}
	subs[0].Close()
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := nodes[0].Stats().Subscriptions; n != 1 { // the node bus
			return fmt.Errorf("node 0 still holds %d subscriptions, want 1 (the node bus)", n)
		}
		return nil
	})
}
