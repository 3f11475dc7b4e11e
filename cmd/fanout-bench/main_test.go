package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fanout-ws/fanout/bench"
	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// chatServer runs a broadcast room in-process on 127.0.0.1:0.
func chatServer(t *testing.T) string {
	t.Helper()
	var hub *server.Hub
	srv, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, _ *server.Request) error { return hub.Join(c) },
		OnMessage: func(_ *server.Conn, op frame.OpCode, data []byte) { hub.Broadcast(op, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	hub = srv.NewHub()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	<-srv.Ready()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "ws://" + ln.Addr().String() + "/ws"
}

func TestSmoke_Scenarios(t *testing.T) {
	url := chatServer(t)
	for _, scenario := range []string{"idle", "broadcast"} {
		t.Run(scenario, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "r.json")
			var stdout bytes.Buffer
			err := run(context.Background(), []string{
				"-url", url, "-scenario", scenario, "-conns", "300", "-rate", "3000",
				"-duration", "1s", "-settle", "100ms", "-msg-rate", "50",
				"-server-pid", "0", "-json", out, "-label", "smoke",
			}, &stdout, os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			var res bench.Result
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			if res.Connected != 300 || res.DialErrors != 0 {
				t.Fatalf("connected %d, dial errors %d", res.Connected, res.DialErrors)
			}
			if scenario == "broadcast" {
				if res.Sent == 0 || res.Missing != 0 || res.Lost != 0 || res.Reordered != 0 || res.P99us <= 0 {
					t.Fatalf("broadcast result %+v", res)
				}
				if res.Deliveries != res.Sent*300 {
					t.Fatalf("%d deliveries for %d messages to 300 subscribers", res.Deliveries, res.Sent)
				}
			}
			if !strings.HasPrefix(stdout.String(), "| smoke | 300 |") {
				t.Fatalf("markdown row %q", stdout.String())
			}
		})
	}
}
