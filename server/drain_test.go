package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gorilla/websocket"
)

// closeSeen is what one client saw at the end of a drain.
type closeSeen struct {
	at   time.Time
	code int
	text string
	msgs []string
	err  error
}

// readUntilClose reads c's messages until its close frame.
func readUntilClose(c *websocket.Conn, seen chan<- closeSeen) {
	var got closeSeen
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, p, err := c.ReadMessage()
		if err == nil {
			got.msgs = append(got.msgs, string(p))
			continue
		}
		got.at = time.Now()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			got.code, got.text = ce.Code, ce.Text
		} else {
			got.err = err
		}
		seen <- got
		return
	}
}

// Drain: Accepting turns false at once while the listener still accepts for
// the grace; then the listener closes and the connections are closed in
// batches spread over the duration, each with 1012 and the reconnect hint,
// after every message broadcast before. Shutdown then has nothing left.
func TestDrain_PacedCloses(t *testing.T) {
	const (
		clients = 40
		msgs    = 50
		grace   = 300 * time.Millisecond
		spread  = time.Second
	)
	s, addr := runServer(t, Config{})
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+addr+"/ws")
	}
	hub := onlyHub(t, s)
	eventually(t, 5*time.Second, func() error {
		if hub.Len() != clients {
			return fmt.Errorf("%d in the hub", hub.Len())
		}
		return nil
	})
	seen := make(chan closeSeen, clients+1)
	for _, c := range conns {
		go readUntilClose(c, seen)
	}
	for i := range msgs {
		hub.Broadcast(frame.OpText, []byte(strconv.Itoa(i)))
	}

	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(context.Background(), grace, spread) }()
	eventually(t, time.Second, func() error {
		if s.Accepting() {
			return errors.New("still ready")
		}
		return nil
	})
	if since := time.Since(start); since >= grace {
		t.Fatalf("readiness turned after %v, not before the grace of %v ended", since, grace)
	}
	late := dialGorilla(t, "ws://"+addr+"/ws") // during the grace: still accepted
	go readUntilClose(late, seen)

	var closes []time.Time
	for i := range clients + 1 {
		got := <-seen
		if got.err != nil || got.code != int(frame.CloseServiceRestart) || got.text != "server restart; retry-ms=1000" {
			t.Fatalf("client %d: close %d %q, err %v; want 1012 with the hint", i, got.code, got.text, got.err)
		}
		if len(got.msgs) != msgs && len(got.msgs) != 0 { // the late one joined after the broadcasts
			t.Fatalf("client %d got %d of %d messages before its close", i, len(got.msgs), msgs)
		}
		closes = append(closes, got.at)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if _, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil); err == nil {
		t.Fatal("the listener still accepts after the drain")
	}
	slices.SortFunc(closes, func(a, b time.Time) int { return a.Compare(b) })
	first, last := closes[0].Sub(start), closes[len(closes)-1].Sub(start)
	batches := 1
	for i := 1; i < len(closes); i++ {
		if closes[i].Sub(closes[i-1]) > drainTick/2 {
			batches++
		}
	}
	t.Logf("closes from %v to %v after the drain began, in %d batches", first, last, batches)
	if first < grace {
		t.Fatalf("first close %v after the drain began, within the grace of %v", first, grace)
	}
	if last-first < spread/2 || batches < 5 {
		t.Fatalf("closes from %v to %v in %d batches: not spread over %v", first, last, batches, spread)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after the drain: %v", err)
	}
}

// A drain whose context ends stops pacing at once; Shutdown then closes
// the rest with 1001, as without a drain.
func TestDrain_CancelThenShutdown(t *testing.T) {
	s, addr := runServer(t, Config{})
	const clients = 10
	seen := make(chan closeSeen, clients)
	for range clients {
		go readUntilClose(dialGorilla(t, "ws://"+addr+"/ws"), seen)
	}
	eventually(t, 5*time.Second, func() error {
		if n := onlyHub(t, s).Len(); n != clients {
			return fmt.Errorf("%d in the hub", n)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(ctx, time.Hour, time.Hour) }()
	eventually(t, time.Second, func() error {
		if s.Accepting() {
			return errors.New("still ready")
		}
		return nil
	})
	cancel()
	if err := <-drained; !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain after cancel: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range clients {
		if got := <-seen; got.code != int(frame.CloseGoingAway) {
			t.Fatalf("close %d %q, err %v; want 1001", got.code, got.text, got.err)
		}
	}
}

// A drain with neither grace nor spread closes everyone in one batch, still
// behind every message broadcast before it.
func TestDrain_FlushesBeforeClose(t *testing.T) {
	const clients, msgs = 20, 2000
	s, addr := runServer(t, Config{})
	seen := make(chan closeSeen, clients)
	for range clients {
		go readUntilClose(dialGorilla(t, "ws://"+addr+"/ws"), seen)
	}
	hub := onlyHub(t, s)
	eventually(t, 5*time.Second, func() error {
		if hub.Len() != clients {
			return fmt.Errorf("%d in the hub", hub.Len())
		}
		return nil
	})
	for i := range msgs {
		hub.Broadcast(frame.OpText, []byte(strconv.Itoa(i)))
	}
	if err := s.Drain(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	for range clients {
		got := <-seen
		if got.code != int(frame.CloseServiceRestart) || len(got.msgs) != msgs || got.msgs[msgs-1] != strconv.Itoa(msgs-1) {
			t.Fatalf("%d messages, then close %d %q (%v); want all %d, then 1012", len(got.msgs), got.code, got.text, got.err, msgs)
		}
	}
}

// A plain HTTP keep-alive connection does not hold a drain back: Drain
// ends once no WebSocket is open, and Shutdown then closes the idle
// keep-alive.
func TestDrain_KeepAliveDoesNotHoldIt(t *testing.T) {
	s, addr := runServer(t, Config{HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "page")
	})})
	ws := dialGorilla(t, "ws://"+addr+"/echo")
	seen := make(chan closeSeen, 1)
	go readUntilClose(ws, seen)
	page, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	fmt.Fprint(page, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(page), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("page: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // under the 5 s keep-alive idle
	defer cancel()
	if err := s.Drain(ctx, 0, 100*time.Millisecond); err != nil {
		t.Fatalf("Drain with a keep-alive open: %v", err)
	}
	if got := <-seen; got.code != int(frame.CloseServiceRestart) {
		t.Fatalf("the WebSocket got %d %q, want 1012", got.code, got.text)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
