package pubsub

// Hostile clients (issue #10, findings 2, 3 and 8; 14 needs a broker that
// can go down: server/pubsub/redis): each test attacks the channels the way
// one anonymous client could, over real loopback sockets, and asserts the
// bound that holds: what the attacker gets, that other clients are still
// served, and the heap growth during and after the attack. These tests do
// not call t.Parallel, so the heap they measure is theirs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/gorilla/websocket"
)

// heapBytes is the live heap after a collection.
func heapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// pipeline sends every message of msgs on c from a goroutine of its own and
// returns the first write error (or nil) once all are sent.
func pipeline(c *websocket.Conn, msgs func(i int) string, n int) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.WriteMessage(websocket.TextMessage, []byte(msgs(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// Finding 2: one anonymous connection publishing to new channel names gets
// "too many channels" after its burst (ChannelCreateRate); publishers alone
// (here the server's own Publish, which the HTTP API uses) fill at most half
// of MaxChannels, so subscribers still get channels; once every channel is
// taken the refusal is 503 with Retry-After at upgrade and from the API, and
// "too many channels" over the control protocol, never "broker unavailable".
func TestHostile_ChannelExhaustion(t *testing.T) {
	const maxChannels = 2000
	b := NewMemoryBroker(BrokerOptions{MaxChannels: maxChannels})
	s := runChannels(t, server.Config{}, Config{Broker: b, MaxChannels: maxChannels})
	api := httptest.NewServer(s.APIHandler("key"))
	t.Cleanup(api.Close)
	before := heapBytes()
	watcher := dialGorilla(t, "ws://"+s.addr+"/ws?channel=watched")
	readEvent(t, watcher)

	attacker := dialGorilla(t, "ws://"+s.addr+"/ws")
	const attempts = 3000
	start := time.Now()
	sent := pipeline(attacker, func(i int) string { return fmt.Sprintf(`{"op":"publish","channel":"spam-%d","data":1}`, i) }, attempts)
	published := 0
	for range attempts {
		switch e := readEvent(t, attacker); {
		case e.Type == "published":
			published++
		case e.Type != "error" || !strings.HasPrefix(e.Reason, "too many channels"):
			t.Fatalf("attacker got %+v, want published or too many channels", e)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if limit := DefaultMaxChannelsPerConn + int(DefaultChannelCreateRate*time.Since(start).Seconds()) + 1; published > limit {
		t.Fatalf("one connection made %d channels, want at most %d (burst + rate)", published, limit)
	}

	made := 0
	for i := range 2 * maxChannels {
		_, err := s.Publish(fmt.Sprintf("flood-%d", i), []byte("1"))
		switch {
		case err == nil:
			made++
		case !errors.Is(err, ErrTooManyChannels) || errors.Is(err, ErrBrokerUnavailable):
			t.Fatalf("publish %d: %v, want ErrTooManyChannels alone", i, err)
		}
	}
	if made+published > MaxUnreadChannels(maxChannels) {
		t.Fatalf("publishes made %d channels, want at most %d", made+published, MaxUnreadChannels(maxChannels))
	}
	for i := range 3 { // subscribers still get new channels, at connect and over the protocol
		c := dialGorilla(t, fmt.Sprintf("ws://%s/ws?channel=fresh-%d", s.addr, i))
		if e := readEvent(t, c); e.Type != "subscribed" {
			t.Fatalf("subscriber %d after the flood: %+v", i, e)
		}
		sendJSON(t, c, fmt.Sprintf(`{"op":"subscribe","channel":"fresher-%d"}`, i))
		if e := readEvent(t, c); e.Type != "subscribed" {
			t.Fatalf("subscriber %d after the flood: %+v", i, e)
		}
	}

	for i := 0; ; i++ { // readers take the rest of the channels
		if _, _, err := b.History(context.Background(), fmt.Sprintf("read-%d", i), 0, 0); err != nil {
			if !errors.Is(err, ErrTooManyChannels) {
				t.Fatal(err)
			}
			break
		}
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+s.addr+"/ws?channel=one-too-many", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("upgrade with every channel taken: %v %+v, want 503 with Retry-After", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "too many channels") {
		t.Fatalf("upgrade refused with %q, want too many channels", body)
	}
	sendJSON(t, attacker, `{"op":"subscribe","channel":"one-too-many"}`)
	if e := readEvent(t, attacker); e.Type != "error" || !strings.HasPrefix(e.Reason, "too many channels") {
		t.Fatalf("subscribe with every channel taken: %+v", e)
	}
	req, _ := http.NewRequest(http.MethodPost, api.URL+"/api/publish", strings.NewReader(`{"channel":"one-too-many","data":1}`))
	req.Header.Set("X-API-Key", "key")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many channels") {
		t.Fatalf("API publish with every channel taken: %d %q, want 503 too many channels with Retry-After", resp.StatusCode, body)
	}

	if _, err := s.Publish("watched", []byte(`"still served"`)); err != nil {
		t.Fatal(err)
	}
	if e := readEvent(t, watcher); string(e.Data) != `"still served"` {
		t.Fatalf("watcher got %+v", e)
	}
	const budget = 16 << 20 // 2,000 channels, their one-message histories and the sockets
	grew := heapBytes() - before
	t.Logf("%d channels: heap grew by %d bytes, %d per channel", maxChannels, grew, grew/maxChannels)
	if grew > budget {
		t.Fatalf("heap grew by %d bytes, want at most %d", grew, budget)
	}
}

// Finding 3: an anonymous client publishing 30 channels x 100 messages of
// 8 KiB (24 MiB, twelve times the budget) leaves at most HistoryMaxBytes of
// history, the oldest evicted first, during the attack and after the client
// left; a subscriber who recovers gets the newest messages and a gap notice.
func TestHostile_HistoryMemory(t *testing.T) {
	const budget = 2 << 20
	b := NewMemoryBroker(BrokerOptions{HistoryMaxBytes: budget})
	s := runChannels(t, server.Config{MaxMessageBytes: 32 << 10}, Config{Broker: b})
	before := heapBytes()
	attacker := dialGorilla(t, "ws://"+s.addr+"/ws")
	_ = attacker.SetReadDeadline(time.Now().Add(time.Minute)) // -race is slow
	payload := `"` + strings.Repeat("x", 8<<10) + `"`
	const channels, perChannel = 30, 100
	sent := pipeline(attacker, func(i int) string {
		return fmt.Sprintf(`{"op":"publish","channel":"hoard-%d","data":%s}`, i/perChannel, payload)
	}, channels*perChannel)
	peak := int64(0)
	for i := range channels * perChannel {
		if e := readEvent(t, attacker); e.Type != "published" {
			t.Fatalf("publish %d: %+v", i, e)
		}
		if got := b.HistoryBytes(); got > budget {
			t.Fatalf("history holds %d bytes after publish %d, want at most %d", got, i, budget)
		}
		if i%1000 == 999 {
			peak = max(peak, heapBytes()-before)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	attacker.Close()

	c := dialGorilla(t, "ws://"+s.addr+"/ws")
	sendJSON(t, c, fmt.Sprintf(`{"op":"subscribe","channel":"hoard-%d","since":0}`, channels-1))
	readEvent(t, c)
	gap := readEvent(t, c)
	if gap.Type != "gap" || gap.First == nil || *gap.First == 1 {
		t.Fatalf("recovering the newest channel: %+v, want a gap (its oldest messages were evicted)", gap)
	}
	for off := *gap.First; off <= perChannel; off++ {
		if e := readEvent(t, c); e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
	sendJSON(t, c, `{"op":"subscribe","channel":"hoard-0","since":0}`)
	readEvent(t, c)
	if e := readEvent(t, c); e.Type != "gap" || e.First == nil || *e.First != perChannel+1 {
		t.Fatalf("recovering the oldest channel: %+v, want a gap with nothing kept", e)
	}
	const slack = 8 << 20 // sockets, buffers and the runtime's own
	after := heapBytes() - before
	t.Logf("24 MiB published: history %d bytes, heap growth peak %d, after %d", b.HistoryBytes(), peak, after)
	if peak > budget+slack || after > budget+slack {
		t.Fatalf("heap grew by %d during and %d after the attack, want at most %d", peak, after, budget+slack)
	}
}

// Finding 8: resubscribing with since=0 to a channel already joined answers
// with the position alone: a thousand such requests cost a thousand small
// replies, not a thousand replays of the whole history (17 MB here). Leaving
// and joining again replays at most at ChannelCreateRate.
func TestHostile_ReplayAmplification(t *testing.T) {
	s := runChannels(t, server.Config{}, Config{})
	payload := []byte(`"` + strings.Repeat("r", 100) + `"`) // 64 replays fit one send queue
	for range DefaultHistorySize {
		if _, err := s.Publish("replayed", payload); err != nil {
			t.Fatal(err)
		}
	}
	c := dialGorilla(t, "ws://"+s.addr+"/ws")
	sendJSON(t, c, `{"op":"subscribe","channel":"replayed","since":0}`)
	readEvent(t, c)
	for off := uint64(1); off <= DefaultHistorySize; off++ { // the first recovery is legitimate
		if e := readEvent(t, c); e.Offset != off {
			t.Fatalf("first recovery: %+v, want offset %d", e, off)
		}
	}
	const repeats = 1000
	sent := pipeline(c, func(i int) string { return fmt.Sprintf(`{"op":"subscribe","channel":"replayed","since":0,"id":%d}`, i) }, repeats)
	received := 0
	for i := range repeats {
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		received += len(msg)
		if !strings.Contains(string(msg), `"type":"subscribed"`) || !strings.Contains(string(msg), fmt.Sprintf(`"id":%d`, i)) {
			t.Fatalf("repeat %d: got %.100s, want its subscribed reply alone", i, msg)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if received > repeats*200 {
		t.Fatalf("%d resubscribes got %d bytes back, want at most %d", repeats, received, repeats*200)
	}
	if _, err := s.Publish("replayed", []byte(`"live"`)); err != nil {
		t.Fatal(err)
	}
	if e := readEvent(t, c); e.Offset != DefaultHistorySize+1 {
		t.Fatalf("after the repeats: %+v, want the live message once", e)
	}

	// Leaving and joining again replays each time, at most at
	// ChannelCreateRate after a burst of MaxChannelsPerConn.
	const cycles = 200
	start := time.Now()
	sent = pipeline(c, func(i int) string {
		if i%2 == 0 {
			return `{"op":"unsubscribe","channel":"replayed"}`
		}
		return `{"op":"subscribe","channel":"replayed","since":0}`
	}, 2*cycles)
	replays := 0
	for answered := 0; answered < cycles; {
		switch e := readEvent(t, c); e.Type {
		case "subscribed":
			answered++
			replays++
		case "error":
			if !strings.HasPrefix(e.Reason, "too many history replays") {
				t.Fatalf("cycle: %+v", e)
			}
			answered++
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if limit := DefaultMaxChannelsPerConn + int(DefaultChannelCreateRate*time.Since(start).Seconds()) + 1; replays > limit {
		t.Fatalf("%d replays in %d leave-and-join cycles, want at most %d", replays, cycles, limit)
	}
}
