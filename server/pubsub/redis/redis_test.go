package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var (
	eventually  = testutil.Eventually
	dialGorilla = testutil.DialGorilla
	readEvent   = testutil.ReadEvent
	sendJSON    = testutil.SendJSON
)

// node is a server with channels on a Redis broker.
type node struct {
	*pubsub.Node
	srv  *server.Server
	logs *testutil.SyncBuffer // the broker's
}

// runNode serves channels on 127.0.0.1:0 with a Broker on url until
// cleanup.
func runNode(t *testing.T, url string, cfg pubsub.Config) *node {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	b, err := New(url, pubsub.BrokerOptions{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, HistoryMaxBytes: cfg.HistoryMaxBytes, MaxChannels: cfg.MaxChannels, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = b
	cfg.HistorySize, cfg.HistoryTTL = 0, 0 // the broker's
	t.Cleanup(func() { _ = b.Close() })    // registered first, so it runs last
	n := &node{logs: logs}
	n.Node, n.srv = pubsubtest.Serve(t, cfg)
	return n
}

func waitReady(t *testing.T, nodes ...*node) {
	t.Helper()
	ns := make([]*pubsub.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = n.Node
	}
	pubsubtest.WaitReady(t, 10*time.Second, ns...)
}

func dialNode(t *testing.T, n *node, query string) *websocket.Conn {
	t.Helper()
	return dialGorilla(t, "ws://"+n.srv.Addr().String()+"/ws"+query)
}

// Three nodes, subscribers spread over them: whatever node a message is
// published on (the library, a client's control message, or a plain Redis
// PUBLISH), every subscriber gets it, in order, once.
func TestRedis_ThreeNodes(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	nodes := []*node{runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{})}
	waitReady(t, nodes...)
	var subs []*websocket.Conn
	for _, s := range nodes {
		for range 2 {
			c := dialNode(t, s, "?channel=news")
			if e := readEvent(t, c); e.Type != "subscribed" || e.Epoch == "" {
				t.Fatalf("got %+v", e)
			}
			subs = append(subs, c)
		}
	}
	const n = 100
	for i := 1; i <= n; i++ {
		p, err := nodes[i%3].Publish("news", fmt.Appendf(nil, "%d", i))
		if err != nil || p.Offset != uint64(i) || p.Delivered != 2 {
			t.Fatalf("publish %d: %+v %v", i, p, err)
		}
	}
	pub := dialNode(t, nodes[1], "")
	sendJSON(t, pub, `{"op":"publish","channel":"news","data":"from a client","id":1}`)
	if e := readEvent(t, pub); e.Type != "published" || e.Offset != n+1 {
		t.Fatalf("got %+v", e)
	}
	ext := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer ext.Close()
	if err := ext.Publish(context.Background(), "fanout:msg:news", `{"from":"redis-cli"}`).Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range subs {
		for off := uint64(1); off <= n+1; off++ {
			if e := readEvent(t, c); e.Type != "message" || e.Offset != off {
				t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, off)
			}
		}
		if e := readEvent(t, c); e.Type != "message" || e.Offset != 0 || string(e.Data) != `{"from":"redis-cli"}` {
			t.Fatalf("subscriber %d: got %+v, want the plain PUBLISH", i, e)
		}
	}
}

// A node dies; its client reconnects to another node with since= and gets
// what was published meanwhile on a third.
func TestRedis_NodeKilledClientRecovers(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	a, b, c := runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{})
	waitReady(t, a, b, c)
	client := dialNode(t, a, "?channel=feed")
	sub := readEvent(t, client)
	if _, err := c.Publish("feed", []byte(`"one"`)); err != nil {
		t.Fatal(err)
	}
	last := readEvent(t, client)
	_ = a.srv.Close() // the node dies
	a.Close()
	if _, _, err := client.ReadMessage(); err == nil {
		t.Fatal("connection to the dead node still open")
	}
	for _, d := range []string{`"two"`, `"three"`} {
		if _, err := c.Publish("feed", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	back := dialNode(t, b, fmt.Sprintf("?channel=feed&since=%d&epoch=%s", last.Offset, sub.Epoch))
	if e := readEvent(t, back); e.Type != "subscribed" || e.Offset != 3 || e.Epoch != sub.Epoch {
		t.Fatalf("got %+v", e)
	}
	for _, want := range []string{`"two"`, `"three"`} {
		if e := readEvent(t, back); e.Type != "message" || string(e.Data) != want {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
}

// Redis down at start: not ready, publishes refused with an error; once it
// is up the node connects by itself.
func TestRedis_NotUpAtStart(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	r.Stop()
	s := runNode(t, r.URL(), pubsub.Config{})
	eventually(t, 5*time.Second, func() error { // it tried, and failed, to connect
		if n := strings.Count(s.logs.String(), "redis broker disconnected; retrying"); n < 2 {
			return fmt.Errorf("%d failed connection attempts logged", n)
		}
		return nil
	})
	if s.Ready() {
		t.Fatal("ready without Redis")
	}
	if _, err := s.Publish("x", []byte("1")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
		t.Fatalf("publish without Redis: %v", err)
	}
	c := dialNode(t, s, "")
	sendJSON(t, c, `{"op":"subscribe","channel":"x"}`)
	if e := readEvent(t, c); e.Type != "error" || !strings.Contains(e.Reason, "broker unavailable") {
		t.Fatalf("subscribe without Redis: %+v", e)
	}
	r.Start()
	waitReady(t, s)
	if p, err := s.Publish("x", []byte("1")); err != nil || p.Offset != 1 {
		t.Fatalf("publish after Redis came up: %+v %v", p, err)
	}
}

// Redis restarts mid-stream (losing its data): publishes fail while it is
// down, nodes resubscribe by themselves, and subscribers are told that the
// history restarted before the new messages.
func TestRedis_Restart(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	a, b := runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{})
	waitReady(t, a, b)
	subs := []*websocket.Conn{dialNode(t, a, "?channel=live"), dialNode(t, b, "?channel=live")}
	for _, c := range subs {
		readEvent(t, c)
	}
	if _, err := a.Publish("live", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		readEvent(t, c)
	}
	r.Stop()
	eventually(t, 5*time.Second, func() error {
		if _, err := a.Publish("live", []byte("2")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
			return fmt.Errorf("publish with Redis down: %v", err)
		}
		return nil
	})
	r.Start()
	waitReady(t, a, b)
	var p pubsub.Publication
	eventually(t, 5*time.Second, func() (err error) { p, err = b.Publish("live", []byte(`"after"`)); return err })
	for i, c := range subs {
		// The notice carries the new epoch and the offset counting restarts
		// from, so a client resets its last offset (README's rule).
		if e := readEvent(t, c); e.Type != "gap" || !strings.Contains(e.Reason, "epoch") || e.Epoch != p.Epoch || e.First == nil || *e.First != 1 {
			t.Fatalf("subscriber %d: got %+v, want an epoch gap to %s from offset 1", i, e, p.Epoch)
		}
		if e := readEvent(t, c); e.Type != "message" || e.Offset != p.Offset || string(e.Data) != `"after"` {
			t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, p.Offset)
		}
	}
}

// Recovery with since= works across nodes, and concurrent publishers on
// every node never make a subscriber see a hole or a step back.
func TestRedis_ConcurrentPublishersInOrder(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	nodes := []*node{runNode(t, r.URL(), pubsub.Config{HistorySize: 1000}), runNode(t, r.URL(), pubsub.Config{HistorySize: 1000})}
	waitReady(t, nodes...)
	c := dialNode(t, nodes[0], "?channel=c")
	readEvent(t, c)
	const per = 200
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, err := s.Publish("c", fmt.Appendf(nil, "%d", i)); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	for off := uint64(1); off <= 2*per; off++ {
		if e := readEvent(t, c); e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
	late := dialNode(t, nodes[1], "?channel=c&since=390")
	readEvent(t, late)
	for off := uint64(391); off <= 2*per; off++ {
		if e := readEvent(t, late); e.Offset != off {
			t.Fatalf("recovered %+v, want offset %d", e, off)
		}
	}
}

// Redis restarts with its data (append-only file): a message published
// before the nodes have resubscribed is not lost, the node catches up from
// history on resubscribing, and subscribers see every offset once, in
// order, with no gap notice.
func TestRedis_RestartKeepsHistory(t *testing.T) {
	t.Parallel()
	r := redistest.StartPersistent(t)
	a, b := runNode(t, r.URL(), pubsub.Config{}), runNode(t, r.URL(), pubsub.Config{})
	waitReady(t, a, b)
	sub := dialNode(t, a, "?channel=kept")
	readEvent(t, sub)
	if _, err := b.Publish("kept", []byte("1")); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Start()
	// Publish straight into the restarted Redis, as a node that reconnected
	// first would, while a may still be resubscribing.
	ext, err := New(r.URL(), pubsub.BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	for i := 2; i <= 4; i++ {
		if p, err := ext.Publish(context.Background(), "kept", fmt.Appendf(nil, "%d", i)); err != nil || p.Offset != uint64(i) {
			t.Fatalf("publish %d after restart: %+v %v", i, p, err)
		}
	}
	waitReady(t, a, b)
	if _, err := b.Publish("kept", []byte("5")); err != nil {
		t.Fatal(err)
	}
	for off := uint64(1); off <= 5; off++ {
		if e := readEvent(t, sub); e.Type != "message" || e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
}

// Once a node delivers a channel, more subscribers there cost the broker
// nothing: a reconnect storm is two Redis calls per channel and node (and
// one SUBSCRIBE).
func TestRedis_SubscribersShareOneBrokerCall(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	s := runNode(t, r.URL(), pubsub.Config{})
	waitReady(t, s)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var subs []*websocket.Conn
	for range 20 {
		c := dialNode(t, s, "?channel=storm")
		if e := readEvent(t, c); e.Type != "subscribed" || e.Epoch == "" {
			t.Fatalf("got %+v", e)
		}
		subs = append(subs, c)
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for line := range strings.SplitSeq(stats, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_eval"); ok { // eval and evalsha
			_, rest, _ = strings.Cut(rest, "calls=")
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			calls += n
		}
	}
	// Two script runs: the first subscribe's check, and its history read
	// once the route is live; a first EVALSHA may miss the script cache.
	if calls == 0 || calls > 3 {
		t.Fatalf("%d script calls for 20 subscribers of one channel\n%s", calls, stats)
	}
	if _, err := s.Publish("storm", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		if e := readEvent(t, c); e.Type != "message" || e.Offset != 1 {
			t.Fatalf("got %+v", e)
		}
	}
}
