package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

func TestServer_EchoGorilla(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{})
	c := dialGorilla(t, "ws://"+addr+"/echo")
	for _, tc := range []struct {
		name string
		op   int
		data []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, fanout")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{"empty", websocket.TextMessage, nil},
		{"64KiB-14", websocket.BinaryMessage, bytes.Repeat([]byte("x"), 64<<10-14)},
	} {
		if err := c.WriteMessage(tc.op, tc.data); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		op, got, err := c.ReadMessage()
		if err != nil || op != tc.op || !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: got op %d len %d err %v", tc.name, op, len(got), err)
		}
	}
	// Close handshake: the server answers 1000 and closes TCP.
	if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye")); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, 1000) {
		t.Fatalf("want close 1000, got %v", err)
	}
}

func TestServer_BroadcastGorilla(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{})
	const clients, msgs = 8, 50
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+addr+"/ws")
	}
	eventually(t, 5*time.Second, func() error {
		if n := s.Stats().Upgraded; n < clients {
			return fmt.Errorf("%d upgraded", n)
		}
		return nil
	})
	for m := range msgs {
		if err := conns[m%clients].WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "%d", m)); err != nil {
			t.Fatal(err)
		}
		// Everyone, sender included, sees messages in send order.
		for i, c := range conns {
			_, got, err := c.ReadMessage()
			if err != nil || string(got) != fmt.Sprint(m) {
				t.Fatalf("client %d: got %q (%v), want %d", i, got, err, m)
			}
		}
	}
	if st := s.Stats(); st.Broadcasts != msgs || st.MessagesIn != msgs {
		t.Fatalf("stats %+v: want %d broadcasts (one serialization each)", st, msgs)
	}
}

func TestServer_HandshakeErrors(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{MaxRequestBytes: 1024})
	for _, tc := range []struct {
		name    string
		request string
		status  int
		header  [2]string
	}{
		{"post", strings.Replace(upgradeRequest("/ws"), "GET", "POST", 1), 405, [2]string{}},
		{"no upgrade header", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, [2]string{}},
		{"plain http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, [2]string{}},
		{"version 8", strings.Replace(upgradeRequest("/ws"), "Version: 13", "Version: 8", 1), 426, [2]string{"Sec-WebSocket-Version", "13"}},
		{"bad key", strings.Replace(upgradeRequest("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", "short", 1), 400, [2]string{}},
		{"http/1.0", strings.Replace(upgradeRequest("/ws"), "HTTP/1.1", "HTTP/1.0", 1), 505, [2]string{}},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, [2]string{}},
		{"unknown route", upgradeRequest("/nope"), 404, [2]string{}},
		{"header too large", "GET /ws HTTP/1.1\r\nX: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431, [2]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send([]byte(tc.request))
			status, h := c.readResponse()
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.header[0] != "" && h.Get(tc.header[0]) != tc.header[1] {
				t.Fatalf("header %s = %q, want %q", tc.header[0], h.Get(tc.header[0]), tc.header[1])
			}
			c.expectEOF()
		})
	}
}

func TestServer_OverCapacity503(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MaxConns: 2})
	dialGorilla(t, "ws://"+addr+"/echo")
	dialGorilla(t, "ws://"+addr+"/echo")
	c := dialRaw(t, addr)
	c.send([]byte(upgradeRequest("/echo")))
	if status, _ := c.readResponse(); status != 503 {
		t.Fatalf("status %d, want 503", status)
	}
	if s.Stats().RejectedCapacity != 1 {
		t.Fatalf("RejectedCapacity = %d", s.Stats().RejectedCapacity)
	}
	eventually(t, 5*time.Second, func() error {
		if n := s.Stats().Closed[ReasonOverCapacity.String()]; n != 1 {
			return fmt.Errorf("closed for over_capacity: %d, want 1", n)
		}
		return nil
	})
}

// Behind Handler the same admission answers 503 over capacity.
func TestServer_HandlerOverCapacity503(t *testing.T) {
	t.Parallel()
	s, err := New(Config{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); _ = s.Close() })
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	dialGorilla(t, url)
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("second connection: %v %v, want 503", resp, err)
	}
	if st := s.Stats(); st.RejectedCapacity != 1 || st.HandshakesFailed != 1 {
		t.Fatalf("RejectedCapacity %d, HandshakesFailed %d; want 1, 1", st.RejectedCapacity, st.HandshakesFailed)
	}
}

// A frame sent in the same write as the request must not be lost, even
// when request and frame together pass MaxRequestBytes.
func TestServer_EarlyFrameKept(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{})
	for _, payload := range []string{"early", strings.Repeat("e", 3*DefaultMaxRequestBytes)} {
		c := dialRaw(t, addr)
		c.upgrade("/echo", clientFrame(true, ws.OpText, []byte(payload)))
		h, p, err := c.next()
		if err != nil || h.OpCode != ws.OpText || string(p) != payload {
			t.Fatalf("got %v %d bytes %v, want the %d-byte early text", h.OpCode, len(p), err, len(payload))
		}
	}
}

func TestServer_HandshakeTimeout(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{HandshakeTimeout: 100 * time.Millisecond})
	c := dialRaw(t, addr)
	c.send([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n"))
	c.expectEOF()
	eventually(t, time.Second, func() error {
		if n := s.Stats().Closed[ReasonHandshakeTimeout.String()]; n != 1 {
			return fmt.Errorf("handshake timeouts = %d", n)
		}
		return nil
	})
}

func TestServer_PingPong(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{})
	c := dialRaw(t, addr)
	c.upgrade("/echo", nil)
	c.send(clientFrame(true, ws.OpPing, []byte("are you there?")))
	h, p, err := c.next()
	if err != nil || h.OpCode != ws.OpPong || string(p) != "are you there?" {
		t.Fatalf("got %v %q %v, want pong with the ping's payload", h.OpCode, p, err)
	}
}

// A client that never answers pings is pinged, then closed with 1001.
func TestServer_IdleTimeout(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{PingInterval: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c := dialRaw(t, addr)
	c.upgrade("/echo", nil)
	h, _, err := c.next()
	if err != nil || h.OpCode != ws.OpPing {
		t.Fatalf("got %v %v, want a ping", h.OpCode, err)
	}
	if code := c.expectClose(); code != frame.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	eventually(t, time.Second, func() error {
		if n := s.Stats().Closed[ReasonIdleTimeout.String()]; n != 1 {
			return fmt.Errorf("idle timeouts = %d", n)
		}
		return nil
	})
}

// A client that answers pings stays connected past the idle timeout.
func TestServer_PongKeepsAlive(t *testing.T) {
	t.Parallel()
	// The idle timeout leaves the pong 1.45 s to come back: a loaded machine
	// (race detector, packages in parallel) took more than the 70 ms it
	// once had, and once more than 350 ms.
	const idle = 1500 * time.Millisecond
	_, addr := runServer(t, Config{PingInterval: 50 * time.Millisecond, IdleTimeout: idle})
	c := dialGorilla(t, "ws://"+addr+"/echo")
	var pings atomic.Int32
	var first atomic.Int64                     // when the first ping arrived, unix ns
	c.SetPingHandler(func(data string) error { // answers, as gorilla's default does, and counts
		first.CompareAndSwap(0, time.Now().UnixNano())
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	eventually(t, 30*time.Second, func() error { // pinged on for three idle timeouts
		if f := first.Load(); f == 0 || time.Since(time.Unix(0, f)) < 3*idle || pings.Load() < 4 {
			return fmt.Errorf("%d pings so far", pings.Load())
		}
		return nil
	})
	if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatalf("connection closed although it answered pings: %v", err)
	}
}

func TestServer_ShutdownSends1001(t *testing.T) {
	s, addr := runServer(t, Config{})
	before := runtime.NumGoroutine()
	clients := make([]*websocket.Conn, 5)
	for i := range clients {
		clients[i] = dialGorilla(t, "ws://"+addr+"/ws")
	}
	eventually(t, 5*time.Second, func() error {
		if s.Live() != len(clients) {
			return fmt.Errorf("live %d", s.Live())
		}
		return nil
	})
	done := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			_, _, err := c.ReadMessage() // gorilla replies to the close frame
			done <- err
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range clients {
		if err := <-done; !websocket.IsCloseError(err, 1001) {
			t.Fatalf("client got %v, want close 1001", err)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if st := s.Stats(); st.Closed[ReasonServerShutdown.String()] != uint64(len(clients)) {
		t.Fatalf("closed by reason %v", st.Closed)
	}
	eventually(t, 2*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before the clients", n, before)
		}
		return nil
	})
}

// Mounted on a plain net/http mux next to other routes.
func TestServer_HandlerOnMux(t *testing.T) {
	t.Parallel()
	r := &chat{}
	s, err := New(chatConfig(Config{}, r))
	if err != nil {
		t.Fatal(err)
	}
	r.hub = s.NewHub()
	mux := http.NewServeMux()
	mux.Handle("/ws", s.Handler())
	mux.Handle("/echo", s.Handler())
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hi") })
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	a, b := dialGorilla(t, url+"/ws"), dialGorilla(t, url+"/ws")
	eventually(t, 5*time.Second, func() error {
		if r.hub.Len() != 2 {
			return fmt.Errorf("hub has %d", r.hub.Len())
		}
		return nil
	})
	if err := a.WriteMessage(websocket.TextMessage, []byte("via mux")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{a, b} {
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "via mux" {
			t.Fatalf("got %q %v", p, err)
		}
	}
	resp, err := http.Get(hs.URL + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// A frame in the same packet as the request reaches the engine.
	c := dialRaw(t, hs.Listener.Addr().String())
	c.upgrade("/echo", clientFrame(true, ws.OpText, []byte("early via mux")))
	if h, p, err := c.next(); err != nil || h.OpCode != ws.OpText || string(p) != "early via mux" {
		t.Fatalf("got %v %q %v", h.OpCode, p, err)
	}
}

// Many clients closing, resetting and broadcasting at once while the server
// shuts down: the race detector and the accounting must stay clean.
func TestServer_CloseRaces(t *testing.T) {
	s, addr := runServer(t, Config{})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
			if err != nil {
				return
			}
			for range 20 {
				if c.WriteMessage(websocket.TextMessage, []byte("race")) != nil {
					break
				}
			}
			switch i % 3 {
			case 0:
				c.Close() // abrupt
			case 1:
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
				c.Close()
			case 2:
				if tc, ok := c.UnderlyingConn().(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	eventually(t, 10*time.Second, func() error {
		if s.Live() != 0 {
			return fmt.Errorf("live %d", s.Live())
		}
		return nil
	})
}

func TestServer_AllowedOrigins(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{AllowedOrigins: []string{"https://app.example.com", "https://*.trusted.example"}})
	for _, tc := range []struct {
		name, origin string
		status       int
	}{
		{"exact", "https://app.example.com", 101},
		{"case-insensitive", "HTTPS://APP.EXAMPLE.COM", 101},
		{"wildcard", "https://eu.trusted.example", 101},
		{"no origin (non-browser client)", "", 101},
		{"other site", "https://evil.example", 403},
		{"scheme differs", "http://app.example.com", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", h)
			if c != nil {
				c.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.status, err)
			}
		})
	}
}

// Reads are edge-triggered (read.go): an event that comes while a task reads
// the socket must make that task read on, and a task that stops before the
// socket is drained (its read budget spent) must have epoll report the rest.
// A lost event would leave echoes unanswered here: every client pipelines
// messages of many sizes, most larger than the 1 KiB read buffer, from two
// workers, and each must get all of them back, in order.
func TestServer_EdgeTriggeredReadsLoseNothing(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{Workers: 2, ReadBufferBytes: 1 << 10})
	const clients, msgs = 16, 300
	var wg sync.WaitGroup
	for i := range clients {
		c := dialGorilla(t, "ws://"+addr+"/echo")
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range msgs {
				if err := c.WriteMessage(websocket.BinaryMessage, echoPayload(i, j)); err != nil {
					t.Errorf("client %d: write %d: %v", i, j, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := range msgs {
				_, got, err := c.ReadMessage()
				if err != nil {
					t.Errorf("client %d: echo %d of %d: %v", i, j, msgs, err)
					return
				}
				if !bytes.Equal(got, echoPayload(i, j)) {
					t.Errorf("client %d: echo %d: %d bytes, not the %d sent", i, j, len(got), len(echoPayload(i, j)))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// echoPayload is message j of client i: 1 byte to ~9 KiB, its first bytes
// naming it.
func echoPayload(i, j int) []byte {
	b := bytes.Repeat([]byte{byte(i + j)}, 1+(i*7919+j*104729)%(9<<10))
	copy(b, fmt.Sprintf("%d/%d", i, j))
	return b
}

// The pools are sized apart: many readers (OnMessage may be slow), one
// write worker per core (a flush never blocks; more only take turns).
func TestConfig_WorkerPools(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Config().WriteWorkers, runtime.GOMAXPROCS(0); got != want {
		t.Errorf("default WriteWorkers %d, want GOMAXPROCS %d", got, want)
	}
	if got, want := s.Config().Workers, 8*runtime.GOMAXPROCS(0); got != want {
		t.Errorf("default Workers %d, want %d", got, want)
	}
	if (Config{WriteWorkers: -1}).Validate() == nil {
		t.Error("WriteWorkers -1 validated")
	}
}
