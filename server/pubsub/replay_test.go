package pubsub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/gorilla/websocket"
)

// Resubscribes with since past MaxReplayRate, as after a reconnect storm:
// none is refused while the queue has room; each waits for its turn (the
// "subscribed" reply comes then, with exactly what it missed), and the
// turns come no faster than the rate.
func TestReplays_PacedAtTheRate(t *testing.T) {
	t.Parallel()
	const (
		clients = 6
		perSec  = 2 // burst 1: a replay every 500 ms, 20 may wait
	)
	s := runChannels(t, server.Config{}, Config{MaxReplayRate: perSec})
	resume := feed(t, s)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+s.addr+"/ws")
	}
	start := time.Now()
	for _, c := range conns {
		sendJSON(t, c, resume)
	}
	for _, c := range conns {
		if e := readEvent(t, c); e.Type != "subscribed" {
			t.Fatalf("got %+v, want subscribed at its turn", e)
		}
		expectFeed(t, c, 2, 3)
	}
	// Only a lower bound: a slow machine makes the turns later, never sooner.
	if took, least := time.Since(start), time.Duration(clients-2)*time.Second/perSec; took < least {
		t.Fatalf("%d replays in %v, faster than %d/s allows (%v)", clients, took, perSec, least)
	}
	if st := s.Stats(); st.ReplaysBusy != 0 || st.ReplaysPaced < clients-2 {
		t.Fatalf("ReplaysBusy %d, ReplaysPaced %d: want none refused, at least %d paced", st.ReplaysBusy, st.ReplaysPaced, clients-2)
	}
}

// Past the queue (10 s of turns), resubscribes are refused with the
// retry-ms hint over the protocol, each hint a place booked at the rate so
// that they differ, and with 503 and Retry-After at upgrade.
func TestReplays_QueueFullRefused(t *testing.T) {
	t.Parallel()
	const (
		perSec  = 0.5 // burst 1, a turn every 2 s: 5 wait in the queue, one more for its token
		clients = 1 + 6 + 3
	)
	s := runChannels(t, server.Config{}, Config{MaxReplayRate: perSec})
	resume := feed(t, s)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+s.addr+"/ws")
		sendJSON(t, conns[i], resume)
	}
	eventually(t, 10*time.Second, func() error {
		if n := s.Stats().ReplaysBusy; n != 3 {
			return fmt.Errorf("%d refused so far, want 3", n)
		}
		return nil
	})
	url := fmt.Sprintf("ws://%s/ws?channel=feed&since=1&epoch=%s", s.addr, epochOf(t, resume))
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("resume at upgrade while the queue is full: %v %v, want 503", err, resp)
	}
	if after, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || after < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
	// Which three found the queue full depends on the workers' order: each
	// connection's first event says (the queued wait 2 s and more).
	hints := map[string]bool{}
	refused := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, p, err := c.ReadMessage()
		var e struct{ Type, Reason string }
		if err == nil && json.Unmarshal(p, &e) == nil && e.Type == "error" {
			if !retryHint.MatchString(e.Reason) {
				t.Fatalf("refused with %q, want the retry hint", e.Reason)
			}
			refused++
			hints[retryHint.FindString(e.Reason)] = true
		}
	}
	if refused != 3 || len(hints) < 2 {
		t.Fatalf("%d refused, told %v: want 3, at places booked at the rate", refused, hints)
	}
}

// feed publishes 1, 2, 3 on channel feed and returns the subscribe that
// resumes it after offset 1.
func feed(t *testing.T, s *testNode) string {
	t.Helper()
	var last Publication
	for i := 1; i <= 3; i++ {
		var err error
		if last, err = s.Publish("feed", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":1,"epoch":%q}`, last.Epoch)
}

// epochOf is the epoch in a subscribe message made by feed.
func epochOf(t *testing.T, resume string) string {
	var m struct{ Epoch string }
	if err := json.Unmarshal([]byte(resume), &m); err != nil {
		t.Fatal(err)
	}
	return m.Epoch
}

// retryHint is a booked place, in whole seconds, of a refusal's reason.
var retryHint = regexp.MustCompile(`retry-ms=[1-9][0-9]*000$`)

// expectFeed reads messages from through to of channel feed, each
// carrying its offset as data.
func expectFeed(t *testing.T, c *websocket.Conn, from, to uint64) {
	t.Helper()
	for off := from; off <= to; off++ {
		if e := readEvent(t, c); e.Type != "message" || e.Offset != off || string(e.Data) != fmt.Sprint(off) {
			t.Fatalf("got %+v, want message %d", e, off)
		}
	}
}
