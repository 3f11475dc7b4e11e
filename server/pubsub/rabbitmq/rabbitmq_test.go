package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/gorilla/websocket"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/amqp"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/message"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"
)

var (
	dialGorilla = testutil.DialGorilla
	eventually  = testutil.Eventually
	readEvent   = testutil.ReadEvent
	sendJSON    = testutil.SendJSON
)

// node is a server with channels on a RabbitMQ broker.
type node struct {
	*pubsub.Node
	srv *server.Server
}

// runNode serves channels on 127.0.0.1:0 with a Broker on url until
// cleanup.
func runNode(t *testing.T, url string, cfg pubsub.Config) *node {
	t.Helper()
	b, err := New(url, pubsub.BrokerOptions{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL,
		HistoryMaxBytes: cfg.HistoryMaxBytes, MaxChannels: cfg.MaxChannels, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = b
	n := &node{}
	n.Node, n.srv = pubsubtest.Serve(t, cfg)
	return n
}

func waitReady(t *testing.T, nodes ...*node) {
	t.Helper()
	ns := make([]*pubsub.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = n.Node
	}
	pubsubtest.WaitReady(t, 20*time.Second, ns...)
}

func dialNode(t *testing.T, n *node, query string) *websocket.Conn {
	t.Helper()
	return dialGorilla(t, "ws://"+n.srv.Addr().String()+"/ws"+query)
}

// publishExternal writes a message to the stream as any stream client
// would: a JSON body with a "channel" application property.
func publishExternal(t *testing.T, rawURL, channel, data string) {
	t.Helper()
	base, name, _ := strings.Cut(rawURL, "/?stream=")
	env, err := stream.NewEnvironment(stream.NewEnvironmentOptions().SetUri(base + "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	prod, err := env.NewProducer(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := amqp.NewMessage([]byte(data))
	m.ApplicationProperties = map[string]any{"channel": channel}
	if err := prod.BatchSend([]message.StreamMessage{m}); err != nil {
		t.Fatal(err)
	}
}

// Three nodes, subscribers spread over them: whatever node a message is
// published on (the library, a client's control message, the HTTP API, or
// a plain stream client), every subscriber gets it, in order, once.
func TestRabbitMQ_ThreeNodes(t *testing.T) {
	t.Parallel()
	url := streamURL(t)
	nodes := []*node{runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{})}
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
	api := httptest.NewServer(nodes[2].APIHandler("k"))
	defer api.Close()
	req, _ := http.NewRequest("POST", api.URL+"/api/publish", strings.NewReader(`{"channel":"news","data":"from the API"}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got pubsub.Publication
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 200 || got.Offset != n+2 {
		t.Fatalf("API publish: %d %+v %v", res.StatusCode, got, err)
	}
	res.Body.Close()
	publishExternal(t, url, "news", `{"from":"a stream client"}`)
	for i, c := range subs {
		for off := uint64(1); off <= n+2; off++ {
			if e := readEvent(t, c); e.Type != "message" || e.Offset != off {
				t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, off)
			}
		}
		if e := readEvent(t, c); e.Type != "message" || e.Offset != 0 || string(e.Data) != `{"from":"a stream client"}` {
			t.Fatalf("subscriber %d: got %+v, want the stream client's message", i, e)
		}
	}
}

// A node dies; its client reconnects to another node with since= and gets
// what was published meanwhile on a third.
func TestRabbitMQ_NodeKilledClientRecovers(t *testing.T) {
	t.Parallel()
	url := streamURL(t)
	a, b, c := runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{})
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
	// b reads the stream on its own: it may not have read "two" or "three"
	// yet when the subscribe arrives (offset 1 or 2), and then delivers
	// them live; either way they arrive once, in order.
	if e := readEvent(t, back); e.Type != "subscribed" || e.Offset < last.Offset || e.Offset > 3 || e.Epoch != sub.Epoch {
		t.Fatalf("got %+v", e)
	}
	for _, want := range []string{`"two"`, `"three"`} {
		if e := readEvent(t, back); e.Type != "message" || string(e.Data) != want {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
}

// Recovery with since= works across nodes, and concurrent publishers on
// two nodes never make a subscriber see a hole or a step back.
func TestRabbitMQ_ConcurrentPublishersInOrder(t *testing.T) {
	t.Parallel()
	url := streamURL(t)
	nodes := []*node{runNode(t, url, pubsub.Config{HistorySize: 1000}), runNode(t, url, pubsub.Config{HistorySize: 1000})}
	waitReady(t, nodes...)
	c := dialNode(t, nodes[0], "?channel=c")
	readEvent(t, c)
	const per = 200
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, s := range nodes {
		wg.Go(func() {
			for i := range per {
				if _, err := s.Publish("c", fmt.Appendf(nil, "%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
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

// RabbitMQ down at start: not ready, publishes and subscribes refused with
// an error; once it is up the node connects by itself. Not parallel: it
// stops the package's broker.
func TestRabbitMQ_NotUpAtStart(t *testing.T) {
	url := streamURL(t)
	rmq.Stop()
	s := runNode(t, url, pubsub.Config{})
	if _, err := s.Publish("x", []byte("1")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
		t.Fatalf("publish without RabbitMQ: %v", err)
	}
	c := dialNode(t, s, "")
	sendJSON(t, c, `{"op":"subscribe","channel":"x"}`)
	if e := readEvent(t, c); e.Type != "error" || !strings.Contains(e.Reason, "broker unavailable") {
		t.Fatalf("subscribe without RabbitMQ: %+v", e)
	}
	if s.Ready() {
		t.Fatal("ready without RabbitMQ")
	}
	if err := rmq.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s)
	if p, err := s.Publish("x", []byte("1")); err != nil || p.Offset != 1 {
		t.Fatalf("publish after RabbitMQ came up: %+v %v", p, err)
	}
}

// restart stops the package's broker, wipes its data if asked, and starts
// it again; publishes fail while it is down. A restart takes longer than
// the read deadline DialGorilla gave subs, so it gives them a new one.
func restart(t *testing.T, wipe bool, n *node, channel string, subs ...*websocket.Conn) {
	t.Helper()
	rmq.Stop()
	eventually(t, 10*time.Second, func() error {
		if _, err := n.Publish(channel, []byte("0")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
			return fmt.Errorf("publish with RabbitMQ down: %v", err)
		}
		return nil
	})
	if wipe {
		if err := rmq.Wipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rmq.Start(); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
}

// RabbitMQ restarts without its data: nodes reconnect by themselves, and
// subscribers are told that the history restarted (a new epoch) before
// the new messages. Not parallel: it stops the package's broker.
func TestRabbitMQ_RestartLosesData(t *testing.T) {
	url := streamURL(t)
	a, b := runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{})
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
	restart(t, true, a, "live", subs...)
	waitReady(t, a, b)
	var p pubsub.Publication
	eventually(t, 5*time.Second, func() (err error) { p, err = b.Publish("live", []byte(`"after"`)); return err })
	for i, c := range subs {
		if e := readEvent(t, c); e.Type != "gap" || !strings.Contains(e.Reason, "epoch") {
			t.Fatalf("subscriber %d: got %+v, want an epoch gap", i, e)
		}
		if e := readEvent(t, c); e.Type != "message" || e.Offset != p.Offset || string(e.Data) != `"after"` {
			t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, p.Offset)
		}
	}
}

// RabbitMQ restarts with its data: messages published by a node that
// reconnected first reach the other node's subscribers through the catch-up
// after it reconnects, every offset once, in order, with no gap notice.
// Not parallel: it stops the package's broker.
func TestRabbitMQ_RestartKeepsHistory(t *testing.T) {
	url := streamURL(t)
	a, b := runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{})
	waitReady(t, a, b)
	sub := dialNode(t, a, "?channel=kept")
	readEvent(t, sub)
	if _, err := b.Publish("kept", []byte("1")); err != nil {
		t.Fatal(err)
	}
	restart(t, false, b, "kept", sub)
	// Publish as a node that reconnected first would, while a may still be
	// reconnecting.
	ext := startBroker(t, url, pubsub.BrokerOptions{})
	waitBrokers(t, ext)
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
