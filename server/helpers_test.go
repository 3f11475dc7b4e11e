package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/internal/wstest"
	"github.com/gobwas/ws"
)

// chat wires the routes cmd/fanout serves: /ws broadcasts to the room,
// /echo echoes.
type chat struct{ hub *Hub }

func chatConfig(cfg Config, r *chat) Config {
	cfg.OnConnect = func(c *Conn, req *Request) error {
		switch req.Path() {
		case "/ws":
			c.SetData(r)
			return r.hub.Join(c)
		case "/echo":
			return nil
		}
		return Reject(http.StatusNotFound, "no such route")
	}
	cfg.OnMessage = func(c *Conn, op frame.OpCode, data []byte) {
		if c.Data() == r {
			r.hub.Broadcast(op, data)
			return
		}
		_ = c.Send(op, data)
	}
	return cfg
}

// runServer serves cfg (with the chat routes unless OnConnect is set) on
// 127.0.0.1:0 and shuts it down at cleanup.
func runServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	r := &chat{}
	if cfg.OnConnect == nil {
		cfg = chatConfig(cfg, r)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.hub = s.NewHub()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, s.Addr().String()
}

// onlyHub returns s's one hub: the chat room of runServer.
func onlyHub(t *testing.T, s *Server) *Hub {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hubs) != 1 {
		t.Fatalf("%d hubs, want 1", len(s.hubs))
	}
	for h := range s.hubs {
		return h
	}
	return nil
}

// The helpers every package's tests share.
var (
	eventually  = testutil.Eventually
	dialGorilla = wstest.DialGorilla
)

// rawClient is a hand-driven client socket; frames are built and read with
// gobwas/ws, an implementation independent of frame/.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func upgradeRequest(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// upgrade sends a valid request for path, plus extra bytes in the same
// write, and checks the 101.
func (c *rawClient) upgrade(path string, extra []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(append([]byte(upgradeRequest(path)), extra...)); err != nil {
		c.t.Fatal(err)
	}
	if status, _ := c.readResponse(); status != 101 {
		c.t.Fatalf("upgrade status %d, want 101", status)
	}
}

// readResponse reads an HTTP response head and returns its status and
// headers.
func (c *rawClient) readResponse() (int, http.Header) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != 101 {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, resp.Header
}

// frame builds a masked client frame with gobwas/ws.
func clientFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Length: int64(len(payload)), Mask: ws.NewMask()}
	var b strings.Builder
	_ = ws.WriteHeader(&b, h)
	p := append([]byte(nil), payload...)
	ws.Cipher(p, h.Mask, 0)
	return append([]byte(b.String()), p...)
}

func (c *rawClient) send(b ...[]byte) {
	c.t.Helper()
	for _, p := range b {
		if _, err := c.nc.Write(p); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

// next reads one server frame (unmasked, as RFC 6455 requires).
func (c *rawClient) next() (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, fmt.Errorf("server frame is masked")
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.br, p)
	return h, p, err
}

// expectClose reads until a close frame, returns its code, answers it and
// checks that the server then closes the TCP connection.
func (c *rawClient) expectClose() frame.CloseCode {
	c.t.Helper()
	for {
		h, p, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for close frame: %v", err)
		}
		if h.OpCode != ws.OpClose {
			continue
		}
		code, _, perr := frame.ParseClosePayload(p)
		if perr != nil {
			c.t.Fatalf("server close payload invalid: %v", perr)
		}
		_, _ = c.nc.Write(clientFrame(true, ws.OpClose, p)) // answer, as RFC 6455 5.5.1 asks
		c.expectEOF()
		return code
	}
}

// expectEOF checks that the server closed the connection.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err := c.br.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		c.t.Fatalf("want the server to close the connection, got %v", err)
	}
}
