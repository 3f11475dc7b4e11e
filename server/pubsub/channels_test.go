package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/gorilla/websocket"
)

// A publish reaches the channel's subscribers only, in order, with offsets
// counting from 1, and the frame is built once however many receive it.
func TestChannels_PublishReachesOnlySubscribers(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{})
	addr := s.addr
	a := dialGorilla(t, "ws://"+addr+"/ws?channel=a")
	b := dialGorilla(t, "ws://"+addr+"/ws?channel=b")
	ab := dialGorilla(t, "ws://"+addr+"/ws?channel=a&channel=b")
	for _, c := range []*websocket.Conn{a, b, ab, ab} {
		if e := readEvent(t, c); e.Type != "subscribed" || e.Offset != 0 || e.Epoch == "" {
			t.Fatalf("got %+v, want subscribed at offset 0", e)
		}
	}
	before := s.srv.Stats().Broadcasts
	for i := 1; i <= 3; i++ {
		p, err := s.Publish("a", fmt.Appendf(nil, `{"n":%d}`, i))
		if err != nil || p.Offset != uint64(i) || p.Delivered != 2 {
			t.Fatalf("publish %d: %+v %v, want offset %d delivered 2", i, p, err, i)
		}
	}
	if _, err := s.Publish("b", []byte(`"for b"`)); err != nil {
		t.Fatal(err)
	}
	if got := s.srv.Stats().Broadcasts - before; got != 4 {
		t.Fatalf("%d serializations for 4 publishes", got)
	}
	// Order holds within a channel; channels do not wait for each other.
	for _, c := range []*websocket.Conn{a, ab} {
		next := uint64(1)
		for next <= 3 {
			e := readEvent(t, c)
			if e.Channel == "b" && c == ab {
				continue
			}
			if e.Type != "message" || e.Channel != "a" || e.Offset != next || string(e.Data) != fmt.Sprintf(`{"n":%d}`, next) {
				t.Fatalf("got %+v, want message %d on a", e, next)
			}
			next++
		}
	}
	if e := readEvent(t, b); e.Channel != "b" || string(e.Data) != `"for b"` {
		t.Fatalf("b got %+v first, want only b's message", e)
	}
}

// Control messages are answered with acks that echo the id, and bad ones
// with errors that carry a reason, without closing the connection.
func TestChannels_ControlMessages(t *testing.T) {
	t.Parallel()
	addr := runChannels(t, server.Config{MaxMessageBytes: 512}, Config{}).addr
	c := dialGorilla(t, "ws://"+addr+"/ws")
	sendJSON(t, c, `{"op":"subscribe","channel":"room:1","id":7}`)
	if e := readEvent(t, c); e.Type != "subscribed" || e.Channel != "room:1" || string(e.ID) != "7" {
		t.Fatalf("got %+v, want subscribed with id 7", e)
	}
	sendJSON(t, c, `{"op":"publish","channel":"room:1","data":{"text":"hi"},"id":8}`)
	// Our own message and the ack may come in either order.
	got := map[string]event{}
	for range 2 {
		e := readEvent(t, c)
		got[e.Type] = e
	}
	if m := got["message"]; string(m.Data) != `{"text":"hi"}` || m.Offset != 1 {
		t.Fatalf("message %+v", m)
	}
	if a := got["published"]; a.Offset != 1 || string(a.ID) != "8" || a.Delivered == nil || *a.Delivered != 1 {
		t.Fatalf("ack %+v", a)
	}
	sendJSON(t, c, `{"op":"unsubscribe","channel":"room:1","id":9}`)
	if e := readEvent(t, c); e.Type != "unsubscribed" || string(e.ID) != "9" {
		t.Fatalf("got %+v, want unsubscribed", e)
	}

	for _, tc := range []struct {
		name, msg, reason string
		binary            bool
	}{
		{"not JSON", "hello", "expected a JSON control message", false},
		{"binary", `{"op":"subscribe","channel":"a"}`, "expected a JSON control message", true},
		{"unknown op", `{"op":"dance","channel":"a"}`, `unknown op "dance"`, false},
		{"unknown field", `{"op":"subscribe","channel":"a","color":"red"}`, `unknown field "color"`, false},
		{"bad name", `{"op":"subscribe","channel":"a b"}`, "bad channel name: byte ' '", false},
		{"empty name", `{"op":"subscribe","channel":""}`, "bad channel name: empty", false},
		{"long name", `{"op":"subscribe","channel":"` + strings.Repeat("x", MaxChannelNameBytes+1) + `"}`, "at most 128", false},
		{"epoch without since", `{"op":"subscribe","channel":"a","epoch":"e"}`, "epoch without since", false},
		{"publish without data", `{"op":"publish","channel":"a"}`, `publish needs "data"`, false},
		{"data on subscribe", `{"op":"subscribe","channel":"a","data":1}`, `"data" belongs to publish`, false},
		{"id not integer", `{"op":"subscribe","channel":"a","id":"x"}`, "id must be an integer", false},
		{"trailing value", `{"op":"subscribe","channel":"a"} {}`, "more than one JSON value", false},
		{"too large to wrap", `{"op":"publish","channel":"a","data":"` + strings.Repeat("x", 460) + `"}`, "message too large", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := websocket.TextMessage
			if tc.binary {
				op = websocket.BinaryMessage
			}
			if err := c.WriteMessage(op, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			e := readEvent(t, c)
			if e.Type != "error" || !strings.Contains(e.Reason, tc.reason) {
				t.Fatalf("got %+v, want an error containing %q", e, tc.reason)
			}
		})
	}
	// Still usable after every error.
	sendJSON(t, c, `{"op":"subscribe","channel":"after","id":1}`)
	if e := readEvent(t, c); e.Type != "subscribed" {
		t.Fatalf("got %+v after errors", e)
	}
}

// A resubscribe with since gets exactly what it missed; when history no
// longer reaches back, or belongs to another epoch, it gets a gap notice
// and what is kept.
func TestChannels_Recovery(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{HistorySize: 4})
	addr := s.addr
	published := 0
	publish := func(n int) Publication {
		var p Publication
		for range n {
			published++
			var err error
			if p, err = s.Publish("feed", fmt.Appendf(nil, "%d", published)); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	last := publish(3)
	subscribe := func(msg string) *websocket.Conn {
		c := dialGorilla(t, "ws://"+addr+"/ws")
		sendJSON(t, c, msg)
		if e := readEvent(t, c); e.Type != "subscribed" || e.Epoch != last.Epoch || e.Offset != last.Offset {
			t.Fatalf("got %+v, want subscribed at %d epoch %s", e, last.Offset, last.Epoch)
		}
		return c
	}
	expectMessages := func(c *websocket.Conn, from, to uint64) {
		t.Helper()
		for off := from; off <= to; off++ {
			if e := readEvent(t, c); e.Type != "message" || e.Offset != off || string(e.Data) != fmt.Sprint(off) {
				t.Fatalf("got %+v, want message %d", e, off)
			}
		}
	}

	c := subscribe(fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":1,"epoch":%q}`, last.Epoch))
	expectMessages(c, 2, 3)
	last = publish(1) // live, right behind the recovered ones
	expectMessages(c, 4, 4)

	last = publish(6) // offsets 5..10; history keeps 7..10
	c = subscribe(fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":3,"epoch":%q}`, last.Epoch))
	if e := readEvent(t, c); e.Type != "gap" || e.First == nil || *e.First != 7 || *e.Since != 3 {
		t.Fatalf("got %+v, want gap since 3 first 7", e)
	}
	expectMessages(c, 7, 10)

	c = subscribe(`{"op":"subscribe","channel":"feed","since":2,"epoch":"another"}`)
	if e := readEvent(t, c); e.Type != "gap" || e.First == nil || *e.First != 7 || e.Epoch != last.Epoch || !strings.Contains(e.Reason, "epoch") {
		t.Fatalf("got %+v, want an epoch gap to %s from 7", e, last.Epoch)
	}
	expectMessages(c, 7, 10)

	c = subscribe(`{"op":"subscribe","channel":"feed","since":99}`)
	if e := readEvent(t, c); e.Type != "gap" || !strings.Contains(e.Reason, "ahead") || e.Epoch != last.Epoch || e.First == nil || *e.First != 7 {
		t.Fatalf("got %+v, want a gap for since ahead", e)
	}
	expectMessages(c, 7, 10)

	c = subscribe(`{"op":"subscribe","channel":"feed","since":10}`) // up to date: nothing follows
	last = publish(1)
	expectMessages(c, 11, 11)
}

// Subscribing while a publisher runs and other subscribers are served: the
// reply always comes first, and after dropping offsets already seen, what
// follows is every offset from since+1 on, in order. (A frame queued on the
// hub before the join once overtook the reply.)
func TestChannels_SubscribeUnderLoad(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{HistorySize: 1000})
	addr := s.addr
	defer publishUntilStopped(s.Node, "live", 50*time.Microsecond)()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	keep := dialGorilla(t, "ws://"+addr+"/ws?channel=live") // keeps the hub's shard busy
	go func() {
		defer wg.Done()
		for {
			if _, _, err := keep.ReadMessage(); err != nil {
				return
			}
		}
	}()
	defer keep.Close()
	for round := range 500 {
		var top uint64
		for _, ch := range s.Channels() {
			top = ch.Offset
		}
		since := top - min(top, 3)
		c := dialGorilla(t, "ws://"+addr+"/ws")
		sendJSON(t, c, fmt.Sprintf(`{"op":"subscribe","channel":"live","since":%d}`, since))
		ack := readEvent(t, c)
		if ack.Type != "subscribed" {
			t.Fatalf("round %d: got %+v before the subscribed reply", round, ack)
		}
		lastSeen := since
		for lastSeen < ack.Offset+10 {
			e := readEvent(t, c)
			if e.Type != "message" {
				t.Fatalf("round %d: got %+v", round, e)
			}
			if e.Offset <= lastSeen {
				continue // a duplicate around the subscribe
			}
			if e.Offset != lastSeen+1 {
				t.Fatalf("round %d, since %d: offset %d after %d", round, since, e.Offset, lastSeen)
			}
			lastSeen = e.Offset
		}
		c.Close()
	}
}

func TestChannels_Limits(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{MaxChannels: 3, MaxChannelsPerConn: 2})
	addr := s.addr
	c := dialGorilla(t, "ws://"+addr+"/ws?channel=x&channel=y")
	readEvent(t, c)
	readEvent(t, c)
	sendJSON(t, c, `{"op":"subscribe","channel":"z"}`)
	if e := readEvent(t, c); e.Type != "error" || !strings.Contains(e.Reason, "too many subscriptions") {
		t.Fatalf("got %+v, want the per-connection limit", e)
	}
	if _, err := s.Publish("z", []byte("1")); err != nil {
		t.Fatalf("third channel: %v", err)
	}
	if _, err := s.Publish("w", []byte("1")); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("fourth channel: %v, want ErrTooManyChannels", err)
	}
	if _, err := s.Publish("x", []byte("{bad")); !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("bad JSON: %v", err)
	}
	if got := len(s.Channels()); got != 2 { // presence: z has no subscriber
		t.Fatalf("%d channels, want 2", got)
	}
}

// A node forgets a channel once its last subscriber leaves; the broker
// forgets it once its history expired, and the next subscriber starts a new
// epoch.
func TestChannels_SweptWhenEmpty(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{HistoryTTL: 50 * time.Millisecond})
	addr := s.addr
	c := dialGorilla(t, "ws://"+addr+"/ws?channel=tmp")
	first := readEvent(t, c)
	if _, err := s.Publish("tmp", []byte("1")); err != nil {
		t.Fatal(err)
	}
	readEvent(t, c)
	hubs := func() int { s.chans.mu.RLock(); defer s.chans.mu.RUnlock(); return len(s.chans.hubs) }
	before := hubs()
	c.Close()
	eventually(t, 5*time.Second, func() error {
		if n := len(s.Channels()); n != 0 {
			return fmt.Errorf("%d channels left", n)
		}
		return nil
	})
	if hubs() != before-1 {
		t.Fatalf("hub of the removed channel still registered")
	}
	eventually(t, 5*time.Second, func() error {
		c := dialGorilla(t, "ws://"+addr+"/ws?channel=tmp")
		defer c.Close()
		if e := readEvent(t, c); e.Epoch == first.Epoch || e.Offset != 0 {
			return fmt.Errorf("got %+v, want a new epoch at offset 0", e)
		}
		return nil
	})
}

// Token claims and OnSubscribe / OnPublish decide who may do what.
func TestChannels_Authorization(t *testing.T) {
	t.Parallel()
	var cfg Config
	cfg.OnSubscribe = func(c *server.Conn, ch string) error {
		if strings.HasPrefix(ch, "private:") {
			return server.Reject(http.StatusForbidden, "private channels need an invitation")
		}
		return nil
	}
	cfg.OnPublish = func(c *server.Conn, ch string, data []byte) error {
		if ch == "readonly" {
			return errors.New("server: readonly channel")
		}
		return nil
	}
	s := runChannels(t, server.Config{}, cfg)
	c := dialGorilla(t, "ws://"+s.addr+"/ws")
	sendJSON(t, c, `{"op":"subscribe","channel":"private:x"}`)
	if e := readEvent(t, c); e.Type != "error" || e.Reason != "private channels need an invitation" {
		t.Fatalf("got %+v", e)
	}
	sendJSON(t, c, `{"op":"publish","channel":"readonly","data":1}`)
	if e := readEvent(t, c); e.Type != "error" || e.Reason != "readonly channel" {
		t.Fatalf("got %+v", e)
	}
	if got := len(s.Channels()); got != 0 {
		t.Fatalf("refused operations created %d channels", got)
	}
}

// Behind Handler, a channel named at connect is joined only once the
// hijacked socket is known; no message published meanwhile goes missing.
func TestChannels_HandlerSubscribeLosesNothing(t *testing.T) {
	t.Parallel()
	s := newNode(t, server.Config{}, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.srv.Handler()}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	})
	defer publishUntilStopped(s.Node, "h", 20*time.Microsecond)()
	for round := range 100 {
		c := dialGorilla(t, "ws://"+ln.Addr().String()+"/ws?channel=h")
		ack := readEvent(t, c)
		if ack.Type != "subscribed" {
			t.Fatalf("round %d: got %+v first", round, ack)
		}
		last := ack.Offset
		for last < ack.Offset+5 {
			e := readEvent(t, c)
			if e.Offset <= last {
				continue
			}
			if e.Offset != last+1 {
				t.Fatalf("round %d: offset %d after %d: a message published during the hijack was lost", round, e.Offset, last)
			}
			last = e.Offset
		}
		c.Close()
	}
}

// Two servers on one MemoryBroker are two nodes in one process: a message
// published on either reaches the subscribers of both, with one offset
// sequence.
func TestMemoryBroker_SharedByTwoServers(t *testing.T) {
	t.Parallel()
	b := NewMemoryBroker(BrokerOptions{})
	s1 := runChannels(t, server.Config{}, Config{Broker: b})
	s2 := runChannels(t, server.Config{}, Config{Broker: b})
	c1 := dialGorilla(t, "ws://"+s1.addr+"/ws?channel=both")
	c2 := dialGorilla(t, "ws://"+s2.addr+"/ws?channel=both")
	readEvent(t, c1)
	readEvent(t, c2)
	for i, s := range []*testNode{s1, s2, s1} {
		if p, err := s.Publish("both", fmt.Appendf(nil, "%d", i)); err != nil || p.Offset != uint64(i+1) || p.Delivered != 1 {
			t.Fatalf("publish %d: %+v %v", i, p, err)
		}
	}
	for _, c := range []*websocket.Conn{c1, c2} {
		for off := uint64(1); off <= 3; off++ {
			if e := readEvent(t, c); e.Offset != off || string(e.Data) != fmt.Sprint(off-1) {
				t.Fatalf("got %+v, want offset %d", e, off)
			}
		}
	}
}

// A quiet channel keeps its epoch while it has subscribers: no publish for
// longer than HistoryTTL, and the next message still follows on, with no gap
// notice.
func TestChannels_QuietChannelKeepsEpoch(t *testing.T) {
	if testing.Short() {
		t.Skip("waits longer than a history TTL")
	}
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{HistoryTTL: 4 * time.Second})
	addr := s.addr
	c := dialGorilla(t, "ws://"+addr+"/ws?channel=quiet")
	ack := readEvent(t, c)
	if _, err := s.Publish("quiet", []byte("1")); err != nil {
		t.Fatal(err)
	}
	readEvent(t, c)
	time.Sleep(5500 * time.Millisecond) // longer than the TTL
	p, err := s.Publish("quiet", []byte("2"))
	if err != nil || p.Epoch != ack.Epoch || p.Offset != 2 {
		t.Fatalf("after a quiet spell: %+v %v, want offset 2 in epoch %s", p, err, ack.Epoch)
	}
	if e := readEvent(t, c); e.Type != "message" || e.Offset != 2 {
		t.Fatalf("got %+v, want message 2 and no gap", e)
	}
}

// publishUntilStopped publishes numbered messages ("1", "2", ...) to
// channel, pause apart, until the returned stop is called; stop waits for
// the publisher.
func publishUntilStopped(s *Node, channel string, pause time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := s.Publish(channel, fmt.Appendf(nil, "%d", i)); err != nil {
				panic(err)
			}
			time.Sleep(pause)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// History limits are set once, on the broker: the node takes them, and a
// different value on the node is refused rather than silently kept.
func TestNode_HistoryFromBroker(t *testing.T) {
	t.Parallel()
	b := NewMemoryBroker(BrokerOptions{HistorySize: 7, HistoryTTL: time.Minute})
	n, err := New(Config{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	if n.cfg.HistorySize != 7 || n.cfg.HistoryTTL != time.Minute {
		t.Fatalf("node history %d %v, want the broker's 7 1m0s", n.cfg.HistorySize, n.cfg.HistoryTTL)
	}
	if _, err := New(Config{Broker: b, HistorySize: 100}); err == nil || !strings.Contains(err.Error(), "differ from the broker's") {
		t.Fatalf("mismatched history: %v", err)
	}
}
