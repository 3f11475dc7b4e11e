// Package servertest serves a server.Server on loopback for the tests of
// what is built on the engine (pubsub, its brokers, cmd): listen on
// 127.0.0.1:0, Serve, wait until Ready, Shutdown at cleanup. The engine's
// own tests keep theirs (they cannot import a package that imports
// server). It imports no test client.
package servertest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// Serve serves srv on 127.0.0.1:0 and returns its address once srv is
// Ready. At cleanup it shuts srv down (5 s grace) and fails tb unless
// Serve returned server.ErrServerClosed.
func Serve(tb testing.TB, srv *server.Server) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		tb.Fatalf("Serve: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			tb.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}
