package pubsubtest

import (
	"cmp"
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
	"github.com/gobwas/ws"
)

// Deployment is one test's broker: a server of its own, or a stream or
// key prefix of its own on a shared server.
type Deployment struct {
	// Broker returns a new client of the deployment, as one node holds
	// (closed at cleanup).
	Broker func(t *testing.T, o pubsub.BrokerOptions) pubsub.Broker
	// Stop stops the broker's server and Start starts it again with its
	// data; Wipe, between them, drops the data. Nil Stop: the broker cannot
	// stop, and the restart scenarios are skipped.
	Stop, Start, Wipe func(t *testing.T)
	// PublishExternal writes data to channel as a client outside Fanout
	// would (nil: the broker has no such way in).
	PublishExternal func(t *testing.T, channel, data string)
}

// Suite describes a broker to Run.
type Suite struct {
	// Deploy starts a deployment for one test.
	Deploy func(t *testing.T) Deployment
	// Shared: the deployments share one server, so the scenarios that
	// stop it run first, one at a time; the others run in parallel.
	Shared bool
	// ReadyTimeout bounds how long nodes take to connect. Zero means 10 s.
	ReadyTimeout time.Duration
	// Skip names the scenarios the broker leaves out, each with why.
	Skip map[string]string
}

// scenario is one test of the suite on a deployment.
type scenario struct {
	name  string
	stops bool // needs Deployment.Stop
	run   func(t *testing.T, c *cluster)
}

var scenarios = []scenario{
	{"NotUpAtStart", true, notUpAtStart},
	{"RestartLosesData", true, restartLosesData},
	{"RestartKeepsHistory", true, restartKeepsHistory},
	{"ThreeNodes", false, threeNodes},
	{"NodeKilledClientRecovers", false, nodeKilledClientRecovers},
	{"ConcurrentPublishersInOrder", false, concurrentPublishersInOrder},
	{"ConcurrentBatchesInOrder", false, concurrentBatchesInOrder},
	{"ChannelChurnLockout", false, channelChurnLockout},
	{"PresenceAcrossNodes", false, presenceAcrossNodes},
}

// Run runs every scenario against s's broker, each in a subtest.
func Run(t *testing.T, s Suite) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if why, ok := s.Skip[sc.name]; ok {
				t.Skip(why)
			}
			if !sc.stops || !s.Shared {
				t.Parallel()
			}
			d := s.Deploy(t)
			if sc.stops && d.Stop == nil {
				t.Skip("this broker cannot be stopped")
			}
			sc.run(t, &cluster{Deployment: d, ready: cmp.Or(s.ReadyTimeout, 10*time.Second)})
		})
	}
}

// cluster is the nodes of one scenario on its deployment.
type cluster struct {
	Deployment
	ready time.Duration
}

// node serves a node on the deployment; cfg's history and channel bounds
// go to the broker, which the node then takes them from.
func (c *cluster) node(t *testing.T, cfg pubsub.Config) *Node {
	t.Helper()
	return c.serve(t, server.Config{}, cfg)
}

// serve is node with the server's config sc.
func (c *cluster) serve(t *testing.T, sc server.Config, cfg pubsub.Config) *Node {
	t.Helper()
	b := c.Broker(t, pubsub.BrokerOptions{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, HistoryMaxBytes: cfg.HistoryMaxBytes, MaxChannels: cfg.MaxChannels})
	if _, ok := b.(interface{ HistoryLimits() (int, time.Duration) }); ok {
		cfg.HistorySize, cfg.HistoryTTL = 0, 0 // the broker's
	}
	cfg.Broker = b
	return Serve(t, sc, cfg)
}

func (c *cluster) nodes(t *testing.T, n int, cfg pubsub.Config) []*Node {
	t.Helper()
	ns := make([]*Node, n)
	for i := range ns {
		ns[i] = c.node(t, cfg)
	}
	WaitReady(t, c.ready, ns...)
	return ns
}

// restart stops the broker, wipes its data if asked, and starts it again;
// publishes through n fail while it is down. A restart may take longer
// than the clients' read deadline: they get a new one.
func (c *cluster) restart(t *testing.T, wipe bool, n *Node, clients ...*Client) {
	t.Helper()
	c.Stop(t)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := n.Publish("restart-probe", []byte("0")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
			return fmt.Errorf("publish with the broker down: %v", err)
		}
		return nil
	})
	if wipe {
		c.Wipe(t)
	}
	c.Start(t)
	for _, cl := range clients {
		cl.SetDeadline(30 * time.Second)
	}
}

// external starts a broker client outside any node, as a node that
// reconnected first would publish through.
func (c *cluster) external(t *testing.T) pubsub.Broker {
	t.Helper()
	b := c.Broker(t, pubsub.BrokerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := b.Start(ctx, func(pubsub.Message) {}, func() {})
	t.Cleanup(func() { cancel(); <-stopped })
	testutil.Eventually(t, c.ready, func() error {
		if !b.Ready() {
			return errors.New("external broker client not ready")
		}
		return nil
	})
	return b
}

// Three nodes, subscribers spread over them: whatever node a message is
// published on (the library, a client's control message, the HTTP API, or
// a client outside Fanout), every subscriber gets it, in order, once.
func threeNodes(t *testing.T, c *cluster) {
	nodes := c.nodes(t, 3, pubsub.Config{})
	var subs []*Client
	for _, s := range nodes {
		for range 2 {
			cl := s.Dial(t, "?channel=news")
			if e := cl.Read(); e.Type != "subscribed" || e.Epoch == "" {
				t.Fatalf("got %+v", e)
			}
			subs = append(subs, cl)
		}
	}
	const n = 100
	for i := 1; i <= n; i++ {
		p, err := nodes[i%3].Publish("news", fmt.Appendf(nil, "%d", i))
		if err != nil || p.Offset != uint64(i) || p.Delivered != 2 {
			t.Fatalf("publish %d: %+v %v", i, p, err)
		}
	}
	pub := nodes[1].Dial(t, "")
	pub.Send(`{"op":"publish","channel":"news","data":"from a client","id":1}`)
	if e := pub.Read(); e.Type != "published" || e.Offset != n+1 {
		t.Fatalf("got %+v", e)
	}
	if p := apiPublish(t, nodes[2], `{"channel":"news","data":"from the API"}`); p.Offset != n+2 {
		t.Fatalf("API publish: %+v", p)
	}
	if c.PublishExternal != nil {
		c.PublishExternal(t, "news", `{"from":"outside"}`)
	}
	for i, cl := range subs {
		for off := uint64(1); off <= n+2; off++ {
			if e := cl.Read(); e.Type != "message" || e.Offset != off {
				t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, off)
			}
		}
		if c.PublishExternal == nil {
			continue
		}
		if e := cl.Read(); e.Type != "message" || e.Offset != 0 || string(e.Data) != `{"from":"outside"}` {
			t.Fatalf("subscriber %d: got %+v, want the message from outside", i, e)
		}
	}
}

// apiPublish publishes body, one message, through n's HTTP API.
func apiPublish(t *testing.T, n *Node, body string) pubsub.Publication {
	t.Helper()
	var p pubsub.Publication
	if err := postAPI(n, body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// postAPI posts body to n's /api/publish and decodes the answer into out.
func postAPI(n *Node, body string, out any) error {
	api := httptest.NewServer(n.APIHandler("k"))
	defer api.Close()
	req, _ := http.NewRequest(http.MethodPost, api.URL+"/api/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil || res.StatusCode != http.StatusOK {
		return fmt.Errorf("API publish: %d %v", res.StatusCode, err)
	}
	return nil
}

// A node dies; its client reconnects to another node with since= and gets
// what was published meanwhile on a third.
func nodeKilledClientRecovers(t *testing.T, c *cluster) {
	ns := c.nodes(t, 3, pubsub.Config{})
	a, b, pubNode := ns[0], ns[1], ns[2]
	client := a.Dial(t, "?channel=feed")
	sub := client.Read()
	if _, err := pubNode.Publish("feed", []byte(`"one"`)); err != nil {
		t.Fatal(err)
	}
	last := client.Read()
	_ = a.Srv.Close() // the node dies
	a.Close()
	if !client.Closed() {
		t.Fatal("connection to the dead node still open")
	}
	for _, d := range []string{`"two"`, `"three"`} {
		if _, err := pubNode.Publish("feed", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	back := b.Dial(t, fmt.Sprintf("?channel=feed&since=%d&epoch=%s", last.Offset, sub.Epoch))
	// A broker whose nodes read on their own (RabbitMQ) may not have given
	// b "two" or "three" yet when the subscribe arrives (offset 1 or 2);
	// b then delivers them live. Either way they arrive once, in order.
	if e := back.Read(); e.Type != "subscribed" || e.Offset < last.Offset || e.Offset > 3 || e.Epoch != sub.Epoch {
		t.Fatalf("got %+v", e)
	}
	for _, want := range []string{`"two"`, `"three"`} {
		if e := back.Read(); e.Type != "message" || string(e.Data) != want {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
}

// Recovery with since= works across nodes, and concurrent publishers on
// two nodes never make a subscriber see a hole or a step back.
func concurrentPublishersInOrder(t *testing.T, c *cluster) {
	nodes := c.nodes(t, 2, pubsub.Config{HistorySize: 1000})
	cl := nodes[0].Dial(t, "?channel=c")
	cl.Read()
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
		if e := cl.Read(); e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
	late := nodes[1].Dial(t, "?channel=c&since=390")
	late.Read()
	for off := uint64(391); off <= 2*per; off++ {
		if e := late.Read(); e.Offset != off {
			t.Fatalf("recovered %+v, want offset %d", e, off)
		}
	}
}

// Batches through the HTTP API from two nodes at once, each over three
// channels: each batch's messages take their channel's offsets in the
// batch's order, and a subscriber of each channel gets every message once,
// gap-free, each node's in the order it published them.
func concurrentBatchesInOrder(t *testing.T, c *cluster) {
	nodes := c.nodes(t, 2, pubsub.Config{HistorySize: 1000})
	channels := []string{"b0", "b1", "b2"}
	var subs []*Client
	for _, ch := range channels {
		cl := nodes[0].Dial(t, "?channel="+ch)
		cl.Read()
		subs = append(subs, cl)
	}
	const batches, size = 20, 12
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for ni, n := range nodes {
		wg.Go(func() {
			for b := range batches {
				var body strings.Builder
				body.WriteString("[")
				for i := range size {
					if i > 0 {
						body.WriteString(",")
					}
					fmt.Fprintf(&body, `{"channel":%q,"data":[%d,%d]}`, channels[i%3], ni, b*size+i)
				}
				body.WriteString("]")
				res, err := apiPublishBatch(n, body.String())
				if err != nil {
					errs <- err
					return
				}
				last := map[string]uint64{}
				for i, p := range res {
					if p.Channel != channels[i%3] || p.Offset <= last[p.Channel] {
						errs <- fmt.Errorf("node %d batch %d: result %d %+v after offset %d", ni, b, i, p, last[p.Channel])
						return
					}
					last[p.Channel] = p.Offset
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for ci, cl := range subs {
		next := [2]int{ci, ci} // each node's next sequence number on this channel
		for off := uint64(1); off <= 2*batches*size/3; off++ {
			e := cl.Read()
			var m [2]int
			if err := json.Unmarshal(e.Data, &m); err != nil || e.Offset != off || m[1] != next[m[0]] {
				t.Fatalf("%s: got %+v (%v), want offset %d, node sequence %v", channels[ci], e, err, off, next)
			}
			next[m[0]] += 3
		}
	}
}

// apiPublishBatch publishes body, a JSON array, through n's HTTP API.
func apiPublishBatch(n *Node, body string) ([]pubsub.Publication, error) {
	var out struct{ Results []pubsub.Publication }
	err := postAPI(n, body, &out)
	return out.Results, err
}

// The broker down at start: not ready, publishes and subscribes refused
// with an error; once it is up the node connects by itself.
func notUpAtStart(t *testing.T, c *cluster) {
	c.Stop(t)
	s := c.node(t, pubsub.Config{})
	if _, err := s.Publish("x", []byte("1")); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
		t.Fatalf("publish with the broker down: %v", err)
	}
	cl := s.Dial(t, "")
	cl.Send(`{"op":"subscribe","channel":"x"}`)
	if e := cl.Read(); e.Type != "error" || !strings.Contains(e.Reason, "broker unavailable") {
		t.Fatalf("subscribe with the broker down: %+v", e)
	}
	if s.Ready() {
		t.Fatal("ready with the broker down")
	}
	c.Start(t)
	WaitReady(t, c.ready, s)
	if p, err := s.Publish("x", []byte("1")); err != nil || p.Offset != 1 {
		t.Fatalf("publish once the broker is up: %+v %v", p, err)
	}
}

// The broker restarts without its data: nodes reconnect by themselves, and
// subscribers are told that the history restarted (a new epoch, from
// offset 1) before the new messages.
func restartLosesData(t *testing.T, c *cluster) {
	ns := c.nodes(t, 2, pubsub.Config{})
	subs := []*Client{ns[0].Dial(t, "?channel=live"), ns[1].Dial(t, "?channel=live")}
	for _, cl := range subs {
		cl.Read()
	}
	if _, err := ns[0].Publish("live", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range subs {
		cl.Read()
	}
	c.restart(t, true, ns[0], subs...)
	WaitReady(t, c.ready, ns...)
	var p pubsub.Publication
	testutil.Eventually(t, 5*time.Second, func() (err error) { p, err = ns[1].Publish("live", []byte(`"after"`)); return err })
	for i, cl := range subs {
		// The notice carries the new epoch and the offset counting restarts
		// from, so a client resets its last offset (README's rule).
		if e := cl.Read(); e.Type != "gap" || !strings.Contains(e.Reason, "epoch") || e.Epoch != p.Epoch || e.First == nil || *e.First != 1 {
			t.Fatalf("subscriber %d: got %+v, want an epoch gap to %s from offset 1", i, e, p.Epoch)
		}
		if e := cl.Read(); e.Type != "message" || e.Offset != p.Offset || string(e.Data) != `"after"` {
			t.Fatalf("subscriber %d: got %+v, want offset %d", i, e, p.Offset)
		}
	}
}

// The broker restarts with its data: a message published before the nodes
// have reconnected is not lost, the node catches up from history, and
// subscribers see every offset once, in order, with no gap notice.
func restartKeepsHistory(t *testing.T, c *cluster) {
	ns := c.nodes(t, 2, pubsub.Config{})
	a, b := ns[0], ns[1]
	sub := a.Dial(t, "?channel=kept")
	sub.Read()
	if _, err := b.Publish("kept", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.restart(t, false, b, sub)
	ext := c.external(t) // publishes as a node that reconnected first would
	for i := 2; i <= 4; i++ {
		if p, err := ext.Publish(context.Background(), "kept", fmt.Appendf(nil, "%d", i)); err != nil || p.Offset != uint64(i) {
			t.Fatalf("publish %d after the restart: %+v %v", i, p, err)
		}
	}
	WaitReady(t, c.ready, a, b)
	if _, err := b.Publish("kept", []byte("5")); err != nil {
		t.Fatal(err)
	}
	for off := uint64(1); off <= 5; off++ {
		if e := sub.Read(); e.Type != "message" || e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
}

// Issue 24, finding 4: subscribe/unsubscribe churn cannot lock channels
// out. Five connections subscribe to 64 new channels each (320 against a
// cap of 300) and leave: once their channels have no subscriber and no
// message they no longer count (Broker.Release), so a new subscriber gets
// in within seconds, not after the history TTL.
func channelChurnLockout(t *testing.T, c *cluster) {
	n := c.nodes(t, 1, pubsub.Config{MaxChannels: 300})[0]
	refused := 0
	var attackers []*Client
	for a := range 5 { // all subscribed at once, then all leave
		cl := n.Dial(t, "")
		attackers = append(attackers, cl)
		for i := range 64 {
			cl.Send(fmt.Sprintf(`{"op":"subscribe","channel":"churn-%d-%d"}`, a, i))
		}
		for range 64 {
			switch e := cl.Read(); {
			case e.Type == "error" && strings.HasPrefix(e.Reason, "too many channels"):
				refused++
			case e.Type != "subscribed":
				t.Fatalf("attacker %d got %+v", a, e)
			}
		}
	}
	for _, cl := range attackers {
		cl.Close()
	}
	if refused != 20 {
		t.Fatalf("%d of 320 subscribes refused, want 20 (the cap is 300)", refused)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		cl, err := TryDial(t, "ws://"+n.Addr+"/ws?channel=after-churn")
		var status ws.StatusError
		switch {
		case errors.As(err, &status):
			return fmt.Errorf("a new subscriber got %d", status)
		case err != nil:
			t.Fatal(err)
		}
		if e := cl.Read(); e.Type != "subscribed" {
			t.Fatalf("new subscriber got %+v", e)
		}
		return nil
	})
}
