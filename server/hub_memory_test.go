package server

import (
	"runtime"
	"testing"
)

// hubBytesPerChannel bounds what a hub with one member costs: what a
// channel with one subscriber costs the engine (README "Limits and abuse").
const hubBytesPerChannel = 400

// A hub lists its shards as members join, rather than laying out a slot for
// every fd the process may open: with the open-files limit at 20,000 each
// channel used to cost 2 KB, and at deploy/'s 1,048,576 34 KB. Live heap
// after a GC, per hub, each with one member.
func TestHub_BytesPerChannel(t *testing.T) {
	joined := make(chan *Conn, 1)
	s, addr := runServer(t, Config{OnConnect: func(c *Conn, _ *Request) error {
		joined <- c
		return nil
	}})
	dialGorilla(t, "ws://"+addr+"/ws")
	c := <-joined
	const n = 2000
	hubs := make([]*Hub, 0, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		h := s.NewHub()
		if err := h.Join(c); err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, h)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d B per hub of one member (open-files limit %d)", per, s.fdLimit)
	if per > hubBytesPerChannel {
		t.Fatalf("a hub of one member costs %d B, want at most %d", per, hubBytesPerChannel)
	}
	for _, h := range hubs {
		if h.Len() != 1 {
			t.Fatalf("hub has %d members, want 1", h.Len())
		}
	}
}
