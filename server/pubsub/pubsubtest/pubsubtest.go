// Package pubsubtest is the conformance suite that every Broker passes
// (Run: the memory broker's, Redis's and RabbitMQ's tests call it) and the
// harness it serves channel nodes with on loopback. It pulls no test
// client into the module's packages: its Client is gobwas/ws's.
package pubsubtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/servertest"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
)

// Node is a channel node served on loopback.
type Node struct {
	*pubsub.Node
	Srv  *server.Server
	Addr string // host:port
}

// Routes routes /ws?channel= to n's subscriptions and every message to
// its control protocol, as cmd/fanout does for channel connections.
func Routes(sc server.Config, n *pubsub.Node) server.Config {
	sc.OnConnect = func(c *server.Conn, r *server.Request) error { return n.SubscribeQuery(c, r.Query()) }
	sc.OnMessage = func(c *server.Conn, op frame.OpCode, data []byte) { n.HandleControl(c, op, data) }
	sc.OnClose = func(c *server.Conn, _ frame.CloseCode, _ server.CloseReason) { n.HandleClose(c) }
	return sc
}

// Serve serves a Node with sc and cfg (cfg.Broker set by the caller) on
// 127.0.0.1:0 until cleanup, with Routes. The Node closes after the server
// has shut down.
func Serve(t *testing.T, sc server.Config, cfg pubsub.Config) *Node {
	t.Helper()
	n, err := pubsub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(Routes(sc, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close) // registered first: runs after the server's shutdown
	return &Node{Node: n, Srv: srv, Addr: servertest.Serve(t, srv)}
}

// Dial connects a client to n's /ws with query ("" or "?channel=...").
func (n *Node) Dial(t *testing.T, query string) *Client {
	t.Helper()
	return Dial(t, "ws://"+n.Addr+"/ws"+query)
}

// WaitReady waits up to timeout for every node's broker to be ready.
func WaitReady(t *testing.T, timeout time.Duration, nodes ...*Node) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		for i, n := range nodes {
			if !n.Ready() {
				return fmt.Errorf("node %d not ready", i)
			}
		}
		return nil
	})
}
