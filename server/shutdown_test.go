package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gorilla/websocket"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// Messages broadcast before Shutdown all arrive, in order, before the 1001
// close frame; afterwards no goroutine or file descriptor is left.
func TestShutdown_FlushesBeforeClose(t *testing.T) {
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	r := &chat{}
	s, err := New(chatConfig(Config{}, r))
	if err != nil {
		t.Fatal(err)
	}
	r.hub = s.NewHub()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	<-s.Ready()

	const clients, msgs = 20, 2000
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	eventually(t, 5*time.Second, func() error {
		if r.hub.Len() != clients {
			return fmt.Errorf("hub %d", r.hub.Len())
		}
		return nil
	})
	results := make(chan error, clients)
	for _, c := range conns {
		go func() {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for i := range msgs {
				_, p, err := c.ReadMessage()
				if err != nil {
					results <- fmt.Errorf("message %d: %w", i, err)
					return
				}
				if string(p) != fmt.Sprint(i) {
					results <- fmt.Errorf("got %q, want %d", p, i)
					return
				}
			}
			_, _, err := c.ReadMessage()
			if !websocket.IsCloseError(err, 1001) {
				results <- fmt.Errorf("after the messages: %v, want close 1001", err)
				return
			}
			results <- nil
		}()
	}
	for i := range msgs {
		r.hub.Broadcast(frame.OpText, fmt.Appendf(nil, "%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range clients {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if n := openFDs(t); n > fds {
			return fmt.Errorf("%d fds open, %d before", n, fds)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			return fmt.Errorf("%d goroutines, %d before", n, goroutines)
		}
		return nil
	})
}
