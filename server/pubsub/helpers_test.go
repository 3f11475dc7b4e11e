package pubsub

import (
	"testing"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/servertest"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/internal/wstest"
	"github.com/fanout-ws/fanout/server"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var (
	eventually  = testutil.Eventually
	dialGorilla = wstest.DialGorilla
)

// testNode is a server with channels on it, serving 127.0.0.1:0.
type testNode struct {
	*Node
	srv  *server.Server
	addr string
}

// channelRoutes routes /ws?channel=a&channel=b (since=&epoch= to resume)
// to subscriptions on n and every message to HandleControl, between n's
// HandleConnect and HandleClose, as cmd/fanout does.
func channelRoutes(cfg server.Config, n *Node) server.Config {
	cfg.OnConnect = func(c *server.Conn, r *server.Request) error {
		err := n.HandleConnect(c, r)
		if err == nil {
			err = n.SubscribeQuery(c, r.Query())
		}
		if err != nil {
			n.HandleClose(c) // a refused connection gets no OnClose
		}
		return err
	}
	cfg.OnMessage = func(c *server.Conn, op frame.OpCode, data []byte) { n.HandleControl(c, op, data) }
	cfg.OnClose = func(c *server.Conn, _ frame.CloseCode, _ server.CloseReason) { n.HandleClose(c) }
	return cfg
}

// newNode returns a node with the channel routes on a server that is not
// serving yet; both stop at cleanup.
func newNode(t *testing.T, sc server.Config, pc Config) *testNode {
	t.Helper()
	n, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(channelRoutes(sc, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(srv); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, srv: srv}
	t.Cleanup(tn.Close) // registered first: runs after the server's shutdown
	return tn
}

// serve serves tn on 127.0.0.1:0 until cleanup.
func (tn *testNode) serve(t *testing.T) *testNode {
	t.Helper()
	tn.addr = servertest.Serve(t, tn.srv)
	return tn
}

// runChannels serves the channel routes with sc and pc.
func runChannels(t *testing.T, sc server.Config, pc Config) *testNode {
	t.Helper()
	return newNode(t, sc, pc).serve(t)
}

// The channel protocol as a client sees it.
type event = testutil.Event

var (
	readEvent = wstest.ReadEvent
	sendJSON  = wstest.SendJSON
)
