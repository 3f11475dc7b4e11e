package pubsub

import (
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
// no more replays than the node's bucket holds, the rest refused with the
// retry-ms hint over the protocol (the subscription is not made), each
// hint a place booked at the rate so that they differ, and 503 with
// Retry-After at upgrade; each one retried later gets exactly what it
// missed.
func TestReplays_NodeRateBound(t *testing.T) {
	t.Parallel()
	const (
		clients = 6
		perSec  = 2 // burst 1: a replay every 500 ms
	)
	s := runChannels(t, server.Config{}, Config{MaxReplayRate: perSec})
	var last Publication
	for i := 1; i <= 3; i++ {
		var err error
		if last, err = s.Publish("feed", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	resume := fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":1,"epoch":%q}`, last.Epoch)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, "ws://"+s.addr+"/ws")
	}
	start := time.Now()
	for _, c := range conns {
		sendJSON(t, c, resume)
	}
	var refused []*websocket.Conn
	hints := map[string]bool{}
	replayed := 0
	for _, c := range conns {
		switch e := readEvent(t, c); {
		case e.Type == "subscribed":
			replayed++
			expectFeed(t, c, 2, 3)
		case e.Type == "error" && retryHint.MatchString(e.Reason):
			refused = append(refused, c)
			hints[retryHint.FindString(e.Reason)] = true
		default:
			t.Fatalf("got %+v, want subscribed or the retry hint", e)
		}
	}
	wave := time.Since(start)
	if limit := 1 + int(wave.Seconds()*perSec) + 1; replayed > limit || len(refused) == 0 {
		t.Fatalf("in %v: %d replayed, %d refused; want at most %d replayed", wave, replayed, len(refused), limit)
	}
	if len(refused) >= 3 && len(hints) < 2 {
		t.Fatalf("%d refused were all told %v: want places booked at %d/s", len(refused), hints, perSec)
	}
	if got := s.Stats().ReplaysBusy; got != uint64(len(refused)) {
		t.Fatalf("ReplaysBusy %d, want %d", got, len(refused))
	}
	// At upgrade the bucket, still empty, answers 503 with Retry-After.
	url := fmt.Sprintf("ws://%s/ws?channel=feed&since=1&epoch=%s", s.addr, last.Epoch)
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("resume at upgrade while replays are busy: %v %v, want 503", err, resp)
	}
	if after, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || after < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
	// Retried one at a time (slower than the rate), each gets its replay.
	for _, c := range refused {
		eventually(t, 5*time.Second, func() error {
			sendJSON(t, c, resume)
			if e := readEvent(t, c); e.Type != "subscribed" {
				return fmt.Errorf("retry: %+v", e)
			}
			return nil
		})
		expectFeed(t, c, 2, 3)
	}
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
