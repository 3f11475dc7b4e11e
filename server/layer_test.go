package server

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// What a layer above the engine (package pubsub) builds on: Hub.Joined
// counts members until they leave or close, Release forgets the hub, and
// DeferUntilAttached holds work until a Handler connection has its socket.
func TestHub_JoinedAndRelease(t *testing.T) {
	t.Parallel()
	var hub atomic.Pointer[Hub] // set once the server runs
	s, addr := runServer(t, Config{OnConnect: func(c *Conn, _ *Request) error { return hub.Load().Join(c) }})
	h := s.NewHub()
	hub.Store(h)
	c := dialGorilla(t, "ws://"+addr+"/")
	if h.Joined() != 1 || h.Len() != 1 {
		t.Fatalf("joined %d, len %d; want 1, 1", h.Joined(), h.Len())
	}
	c.Close()
	eventually(t, 5*time.Second, func() error {
		if n := h.Joined(); n != 0 {
			return fmt.Errorf("joined %d after close", n)
		}
		return nil
	})
	h.Release()
	s.mu.Lock()
	_, kept := s.hubs[h]
	s.mu.Unlock()
	if kept {
		t.Fatal("a released hub is still drained at shutdown")
	}
}

func TestConn_DeferUntilAttached(t *testing.T) {
	t.Parallel()
	type result struct{ deferred, attached, member bool }
	results := make(chan result, 2)
	var hub atomic.Pointer[Hub] // each server's, set once it runs
	cfg := Config{OnConnect: func(c *Conn, _ *Request) error {
		h := hub.Load()
		if err := h.Join(c); err != nil {
			return err
		}
		var r result
		r.deferred = c.DeferUntilAttached(func(attached bool) {
			r.attached, r.member = attached, h.Len() == 1
			results <- r
		})
		if !r.deferred {
			results <- r
		}
		return nil
	}}
	s, addr := runServer(t, cfg) // Serve: the socket is there from the start
	hub.Store(s.NewHub())
	c := dialGorilla(t, "ws://"+addr+"/")
	if r := <-results; r.deferred {
		t.Fatalf("Serve connection: %+v, want nothing deferred", r)
	}
	c.Close()

	s2, err := New(cfg) // Handler: the socket comes after OnConnect
	if err != nil {
		t.Fatal(err)
	}
	hub.Store(s2.NewHub())
	hs := httptest.NewServer(s2.Handler())
	t.Cleanup(func() { hs.Close(); _ = s2.Close() })
	dialGorilla(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	if r := <-results; !r.deferred || !r.attached || !r.member {
		t.Fatalf("Handler connection: %+v, want deferred, then run attached with c already a hub member", r)
	}
}
