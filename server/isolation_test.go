package server

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// With 4 workers, 50 clients stuck mid-frame and 50 stuck mid-handshake must
// not delay anyone else: a worker never waits on a socket.
func TestServer_StalledClientsDoNotBlockWorkers(t *testing.T) {
	s, addr := runServer(t, Config{Workers: 4})
	for range 50 {
		c := dialRaw(t, addr)
		c.upgrade("/echo", nil)
		f := clientFrame(true, ws.OpText, []byte("this frame never completes"))
		c.send(f[:1]) // half a header, then silence
	}
	for range 50 {
		c := dialRaw(t, addr)
		c.send([]byte("GET /echo HTTP/1.1\r\nHost: x\r\n")) // half a request
	}
	eventually(t, 5*time.Second, func() error {
		if s.Live() != 100 {
			return fmt.Errorf("live %d, want 100", s.Live())
		}
		return nil
	})
	c := dialGorilla(t, "ws://"+addr+"/echo")
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "ping %d", i)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	// A liveness bound, not a performance target: a blocked worker pool
	// would stall these echoes until the handshake timeout (5 s).
	if worst > 100*time.Millisecond {
		t.Fatalf("slowest echo took %v with stalled clients around, want < 100ms", worst)
	}
}

// Ten subscribers that never read while 10,000 1 KiB messages are broadcast:
// they are evicted as slow consumers, every other subscriber gets every
// message in order, and the heap stays bounded.
func TestServer_SlowConsumersEvicted(t *testing.T) {
	if testing.Short() {
		t.Skip("broadcasts 10 MB")
	}
	const queue = 256 << 10
	s, addr := runServer(t, Config{SendQueueBytes: queue})
	for range 10 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		if _, err := nc.Write([]byte(upgradeRequest("/ws"))); err != nil {
			t.Fatal(err)
		}
		// never reads again
	}
	const readers, msgs = 5, 10_000
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	conns := make([]*websocket.Conn, readers)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+addr+"/ws")
	}
	eventually(t, 5*time.Second, func() error {
		if s.Stats().Upgraded != 15 {
			return fmt.Errorf("upgraded %d", s.Stats().Upgraded)
		}
		return nil
	})
	progress := make([]atomic.Int64, readers)
	for r, c := range conns {
		wg.Go(func() {
			for want := range msgs {
				progress[r].Store(int64(want))
				_, p, err := c.ReadMessage()
				if err != nil {
					errs <- err
					return
				}
				if got := int(p[0])<<8 | int(p[1]); got != want&0xffff {
					errs <- fmt.Errorf("got message %d, want %d", got, want)
					return
				}
			}
		})
	}
	var peakHeap uint64
	msg := make([]byte, 1024)
	hub := onlyHub(t, s) // the chat room
	for i := range msgs {
		msg[0], msg[1] = byte(i>>8), byte(i)
		hub.Broadcast(frame.OpBinary, msg)
		if i%100 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapAlloc)
			// Pace the publisher to what healthy readers can take (under
			// -race too), keeping them well inside their queue limit; the
			// silent ones fall behind regardless.
			for r := range progress {
				for progress[r].Load() < int64(i-100) && len(errs) == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if n := s.Stats().SlowConsumers; n != 10 {
			return fmt.Errorf("evicted %d, want 10", n)
		}
		return nil
	})
	// Without eviction the ten would hold up to 10 MB each in queues.
	if peakHeap > 64<<20 {
		t.Fatalf("peak heap %d MB", peakHeap>>20)
	}
	t.Logf("peak heap %.1f MB, hub drops %d", float64(peakHeap)/(1<<20), hub.Drops())
}

// Idle connections own no goroutine and no buffer.
func TestServer_IdleConnsOwnNothing(t *testing.T) {
	s, addr := runServer(t, Config{})
	base := runtime.NumGoroutine()
	const n = 500
	for i := range n {
		c := dialRaw(t, addr)
		path := "/ws"
		if i%2 == 1 {
			path = "/echo"
		}
		// A message split over two writes goes through the parser's pooled
		// buffer; it must be handed back once the message is delivered.
		f := clientFrame(true, ws.OpText, []byte("one message in two pieces, then idle"))
		c.upgrade(path, f[:10])
		time.Sleep(time.Millisecond)
		c.send(f[10:])
		if path == "/echo" {
			if _, _, err := c.next(); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 5*time.Second, func() error {
		if s.Live() != n {
			return fmt.Errorf("live %d", s.Live())
		}
		if g := runtime.NumGoroutine(); g > base+10 {
			return fmt.Errorf("%d goroutines for %d connections (%d before)", g, n, base)
		}
		held := 0
		s.eachConn(func(c *Conn) {
			c.mu.Lock()
			if c.out.q != nil || c.hs != nil || c.rd.p != nil || c.out.writing {
				held++
			}
			c.mu.Unlock()
		})
		if held > 0 {
			return fmt.Errorf("%d idle connections hold a queue, handshake state or parser", held)
		}
		return nil
	})
}
