package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// heard collects the notes a node's handler received, by sender.
type heard struct {
	mu   sync.Mutex
	from map[nodeID][]int
}

func (h *heard) note(from nodeID, payload json.RawMessage) {
	var i int
	if json.Unmarshal(payload, &i) != nil {
		i = -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.from[from] = append(h.from[from], i)
}

func (h *heard) of(id nodeID) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.from[id])
}

// busNodes starts count nodes, each on a client of broker(), with a handler
// of "count" notes.
func busNodes(t *testing.T, broker func() Broker, count int) ([]*testNode, []*heard) {
	t.Helper()
	var nodes []*testNode
	var hs []*heard
	for range count {
		n, err := New(Config{Broker: broker()})
		if err != nil {
			t.Fatal(err)
		}
		h := &heard{from: make(map[nodeID][]int)}
		n.bus.handle("count", h.note)
		srv, err := server.New(server.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(srv); err != nil {
			t.Fatal(err)
		}
		tn := &testNode{Node: n, srv: srv}
		t.Cleanup(tn.Close)
		nodes, hs = append(nodes, tn.serve(t)), append(hs, h)
	}
	return nodes, hs
}

// Three nodes on one broker: every note of every node reaches every node,
// the sender included, once, in the order it was sent; a note of another
// kind reaches no "count" handler; an oversized note is refused at send.
func TestBus_ThreeNodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broker func(*MemoryBroker) Broker
	}{
		{"memory", func(m *MemoryBroker) Broker { return m }},
		{"routed", func(m *MemoryBroker) Broker { return &routedBroker{MemoryBroker: m, routes: make(map[string]bool)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := NewMemoryBroker(BrokerOptions{})
			nodes, hs := busNodes(t, func() Broker { return tc.broker(shared) }, 3)
			for i, n := range nodes {
				if r, ok := n.broker.(*routedBroker); ok && !r.routed(busChannel) {
					t.Fatalf("node %d did not route the bus at Start", i)
				}
			}
			const per = 200
			var wg sync.WaitGroup
			for _, n := range nodes {
				wg.Go(func() {
					for i := range per {
						for n.bus.send("count", i) != nil { // queue full: wait for the sender
							time.Sleep(time.Millisecond)
						}
					}
				})
			}
			wg.Wait()
			if err := nodes[0].bus.send("other", 1); err != nil {
				t.Fatal(err)
			}
			if err := nodes[0].bus.send("count", strings.Repeat("x", maxNoteBytes)); err == nil {
				t.Fatal("a note over maxNoteBytes was accepted")
			}
			want := make([]int, per)
			for i := range want {
				want[i] = i
			}
			eventually(t, 10*time.Second, func() error {
				for i, h := range hs {
					for j, from := range nodes {
						if got := h.of(from.bus.id); !slices.Equal(got, want) {
							return fmt.Errorf("node %d heard %d notes of node %d, want %d in order (first: %v)", i, len(got), j, per, got[:min(5, len(got))])
						}
					}
				}
				return nil
			})
			if d := nodes[0].Stats().BusNotesDropped; d != 0 {
				t.Errorf("%d notes dropped", d)
			}
		})
	}
}

// routedBroker is one node's client of a shared MemoryBroker that routes
// by interest, as the Redis broker does: the node hears only the channels
// it routed.
type routedBroker struct {
	*MemoryBroker
	mu     sync.Mutex
	routes map[string]bool
}

func (b *routedBroker) Start(ctx context.Context, deliver func(Message), resync func()) <-chan struct{} {
	return b.MemoryBroker.Start(ctx, func(m Message) {
		if b.routed(m.Channel) {
			deliver(m)
		}
	}, resync)
}

func (b *routedBroker) routed(channel string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.routes[channel]
}

func (b *routedBroker) Route(channel string, live func()) {
	b.mu.Lock()
	b.routes[channel] = true
	b.mu.Unlock()
	go live()
}

func (b *routedBroker) Unroute(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.routes, channel)
}
