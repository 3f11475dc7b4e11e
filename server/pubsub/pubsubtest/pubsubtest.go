// Package pubsubtest serves channel nodes on loopback for the broker
// packages' tests, so each broker's tests build only their Broker.
package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
)

// Serve serves a Node with cfg (cfg.Broker set by the caller) on
// 127.0.0.1:0 until cleanup: /ws?channel= subscribes, text frames are
// control messages. The Node closes after the server has shut down.
func Serve(t *testing.T, cfg pubsub.Config) (*pubsub.Node, *server.Server) {
	t.Helper()
	n, err := pubsub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, r *server.Request) error { return n.SubscribeQuery(c, r.Query()) },
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) { n.HandleControl(c, op, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	<-srv.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return n, srv
}

// WaitReady waits up to timeout for every node's broker to be ready.
func WaitReady(t *testing.T, timeout time.Duration, nodes ...*pubsub.Node) {
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
