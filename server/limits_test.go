package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// A flood past MessageRate is dropped and counted; the connection lives.
func TestLimits_MessageRateDrops(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MessageRate: 10, MessageBurst: 5})
	c := dialRaw(t, addr)
	c.upgrade("/echo", nil)
	var flood []byte
	for i := range 200 {
		flood = append(flood, clientFrame(true, ws.OpText, fmt.Appendf(nil, "%d", i))...)
	}
	c.send(flood)
	// The burst gets through, then the bucket refills at 10/s.
	for i := range 5 {
		if h, p, err := c.next(); err != nil || string(p) != fmt.Sprint(i) {
			t.Fatalf("echo %d: %v %q %v", i, h.OpCode, p, err)
		}
	}
	eventually(t, 5*time.Second, func() error {
		if n := s.Stats().RateLimited; n < 150 {
			return fmt.Errorf("rate limited %d", n)
		}
		return nil
	})
	if s.Live() != 1 {
		t.Fatalf("live %d: dropping must not close", s.Live())
	}
}

func TestLimits_RateLimitClose(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{ByteRate: 1000, MaxMessageBytes: 1000, SendQueueBytes: 4096, RateLimitClose: true})
	c := dialRaw(t, addr)
	c.upgrade("/echo", nil)
	big := make([]byte, 900)
	c.send(clientFrame(true, ws.OpBinary, big), clientFrame(true, ws.OpBinary, big))
	if h, _, err := c.next(); err != nil || h.OpCode != ws.OpBinary {
		t.Fatalf("first message: %v %v", h.OpCode, err)
	}
	if code := c.expectClose(); code != frame.ClosePolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	eventually(t, time.Second, func() error {
		if n := s.Stats().Closed[ReasonRateLimited.String()]; n != 1 {
			return fmt.Errorf("closed for rate %d", n)
		}
		return nil
	})
}

func TestLimits_PerIP(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MaxConnsPerIP: 3})
	var open []*websocket.Conn
	for range 3 {
		open = append(open, dialGorilla(t, "ws://"+addr+"/echo"))
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th connection from one address: %v %v, want 429", resp, err)
	}
	resp.Body.Close()
	open[0].Close()
	eventually(t, 5*time.Second, func() error {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	if s.Stats().RejectedIP < 1 {
		t.Fatal("429 not counted")
	}

	s2, addr2 := runServer(t, Config{HandshakeRatePerIP: 2})
	refused := 0
	for range 10 {
		c, resp, _ := websocket.DefaultDialer.Dial("ws://"+addr2+"/echo", nil)
		if c != nil {
			c.Close()
		}
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused < 5 || s2.Stats().RejectedIP != uint64(refused) {
		t.Fatalf("%d of 10 quick handshakes refused (stats %d), want most past a 2/s bucket", refused, s2.Stats().RejectedIP)
	}
}

// A message the application's validator refuses reaches nobody; its sender
// is closed with 1008 and the reason.
func TestCheckMessage_RefusedNeverBroadcast(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{CheckMessage: func(_ *Conn, op frame.OpCode, data []byte) error {
		if op != frame.OpText || len(data) == 0 || data[0] != '{' {
			return fmt.Errorf("want a JSON object")
		}
		return nil
	}})
	good, bad := dialGorilla(t, "ws://"+addr+"/ws"), dialGorilla(t, "ws://"+addr+"/ws")
	eventually(t, 5*time.Second, func() error {
		if s.Live() != 2 {
			return fmt.Errorf("live %d", s.Live())
		}
		return nil
	})
	if err := bad.WriteMessage(websocket.TextMessage, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	_, _, err := bad.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 || ce.Text != "want a JSON object" {
		t.Fatalf("sender got %v, want close 1008 with the validator's reason", err)
	}
	if err := good.WriteMessage(websocket.TextMessage, []byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if _, p, err := good.ReadMessage(); err != nil || string(p) != `{"ok":true}` {
		t.Fatalf("first message seen by the other client: %q %v (the refused one must not be broadcast)", p, err)
	}
}

// Per-IP limits count an IPv6 client by its prefix (IPv6PrefixBits, /64 by
// default): one host holds a whole /64, so counting each address would let
// it past MaxConnsPerIP 2^64 times. Clients come through a trusted proxy
// (X-Forwarded-For), as loopback has one IPv6 address.
func TestLimits_PerIPv6Prefix(t *testing.T) {
	t.Parallel()
	if (Config{IPv6PrefixBits: 129}).Validate() == nil || (Config{IPv6PrefixBits: -1}).Validate() == nil {
		t.Fatal("IPv6PrefixBits outside 1-128 accepted")
	}
	for _, tc := range []struct {
		bits    int
		clients []string
		want    []int
	}{
		{0, []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::3", "2001:db8:1:3::1"}, []int{101, 101, 429, 101}},
		{48, []string{"2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1", "2001:db8:2::1"}, []int{101, 101, 429, 101}},
		{128, []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"}, []int{101, 101, 101}},
		{0, []string{"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1", "192.0.2.2"}, []int{101, 101, 429, 101}},
	} {
		_, addr := runServer(t, whoamiConfig(Config{MaxConnsPerIP: 2, IPv6PrefixBits: tc.bits}))
		for i, client := range tc.clients {
			c := dialFrom(t, proxyIP, addr)
			if _, status := c.seenAs(nil, "X-Forwarded-For: "+client+"\r\n"); status != tc.want[i] {
				t.Fatalf("/%d: connection %d from %s: status %d, want %d", tc.bits, i, client, status, tc.want[i])
			}
		}
	}
}
