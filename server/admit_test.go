package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// Config.Admit decides off the read path: a request waits, unread, for
// done; a frame sent with it is read after the 101; a refusal answers with
// its status and headers; a second done does nothing.
func TestAdmit_Decides(t *testing.T) {
	decisions := make(chan func(error), 4)
	_, addr := runServer(t, Config{Workers: 1, Admit: func(_ *Conn, _ *Request, done func(error)) { decisions <- done }})
	allowed, refused := dialRaw(t, addr), dialRaw(t, addr)
	allowed.send([]byte(upgradeRequest("/echo")), clientFrame(true, ws.OpText, []byte("early")))
	allow := <-decisions
	refused.send([]byte(upgradeRequest("/echo")))
	refuse := <-decisions // the one worker is free while the first waits
	refuse(&RejectError{Status: http.StatusTooManyRequests, Reason: "slow down", Header: http.Header{"Retry-After": {"7"}}})
	if status, h := refused.readResponse(); status != http.StatusTooManyRequests || h.Get("Retry-After") != "7" {
		t.Fatalf("refused: %d %v", status, h)
	}
	allow(nil)
	allow(errOrigin) // once decided, done does nothing
	if status, _ := allowed.readResponse(); status != http.StatusSwitchingProtocols {
		t.Fatalf("allowed: %d", status)
	}
	if _, p, err := allowed.next(); err != nil || string(p) != "early" {
		t.Fatalf("the frame sent with the request: %q %v", p, err)
	}
}

// A decision that comes after the handshake timeout finds the connection
// closed, and does nothing.
func TestAdmit_HandshakeTimeout(t *testing.T) {
	decisions := make(chan func(error), 1)
	s, addr := runServer(t, Config{HandshakeTimeout: 200 * time.Millisecond, Admit: func(_ *Conn, _ *Request, done func(error)) { decisions <- done }})
	c := dialRaw(t, addr)
	c.send([]byte(upgradeRequest("/echo")))
	done := <-decisions
	c.expectEOF()
	done(nil)
	eventually(t, 5*time.Second, func() error {
		if n := s.Live(); n != 0 {
			return fmt.Errorf("%d connections live", n)
		}
		return nil
	})
}

// Behind Handler, net/http's goroutine waits for the decision: an answer
// from another goroutine upgrades or refuses with its status.
func TestAdmit_Handler(t *testing.T) {
	s, err := New(Config{Admit: func(c *Conn, r *Request, done func(error)) {
		go func() {
			if r.Header.Get("X-Session") == "" {
				done(Reject(http.StatusUnauthorized, "no session"))
				return
			}
			done(nil)
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); _ = s.Close() })
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refused: %v %v, want 401", resp, err)
	}
	c, _, err := websocket.DefaultDialer.Dial(url, http.Header{"X-Session": {"1"}})
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	c.Close()
}

// Over TLS a request read by the handshake goroutine, before the socket
// is registered, waits the same way; once allowed, the socket is
// registered and read.
func TestAdmit_TLS(t *testing.T) {
	tc, pool := tlsSetup(t, true)
	_, addr := runServer(t, Config{TLS: tc, Admit: func(_ *Conn, _ *Request, done func(error)) { go done(nil) }})
	for range 3 {
		c, _, err := gorillaFrom(1, "wss://"+addr+"/echo", pool)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("over tls")); err != nil {
			t.Fatal(err)
		}
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "over tls" {
			t.Fatalf("echo: %q %v", p, err)
		}
		c.Close()
	}
}
