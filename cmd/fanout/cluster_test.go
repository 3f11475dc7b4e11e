package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
)

// Two fanout processes' worth of run() share one port with -reuseport and
// one Redis with -broker: the kernel spreads the clients over both, and a
// message published through either reaches all of them.
func TestRun_ReusePortWithRedisBroker(t *testing.T) {
	r := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-reuseport", "-broker", r.URL(), "-admin-addr", "127.0.0.1:0", "-api-key", testAPIKey}
	first, done1 := startRun(t, ctx, args...)
	addr := first.addr
	second, done2 := startRun(t, ctx, append(args, "-addr", addr)...) // the last -addr wins
	defer func() {
		cancel()
		for _, done := range []<-chan error{done1, done2} {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	admins := []string{first.admin, second.admin}
	eventually(t, 10*time.Second, func() error { // ready only once the broker is subscribed
		for _, admin := range admins {
			if code, _ := get("http://" + admin + "/readyz"); code != 200 {
				return fmt.Errorf("%s not ready: %d", admin, code)
			}
		}
		return nil
	})
	const clients = 40
	var conns []*websocket.Conn
	for range clients {
		c := dialWS(t, "ws://"+addr+"/ws?channel=all")
		readJSON(t, c, "subscribed")
		conns = append(conns, c)
	}
	for i, admin := range admins {
		_, page := get("http://" + admin + "/metrics")
		if n, _ := strconv.Atoi(metric(page, "fanout_connections_open")); n == 0 || n == clients {
			t.Fatalf("process %d holds %d of %d connections: the port is not shared", i, n, clients)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/publish", strings.NewReader(`{"channel":"all","data":"everyone"}`))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	for i, c := range conns {
		if m := readJSON(t, c, "message"); m["data"] != "everyone" || m["offset"] != 1.0 {
			t.Fatalf("client %d got %v", i, m)
		}
	}
}

// -broker rabbitmq-stream:// makes a RabbitMQ broker: with nothing
// listening there the node serves, but /readyz answers 503 and a publish
// through the API is refused (the broker's own tests run a real RabbitMQ).
func TestRun_RabbitMQBrokerDown(t *testing.T) {
	down := freeAddr(t) // nothing listens there
	ctx, cancel := context.WithCancel(context.Background())
	addrs, done := startRun(t, ctx, "-admin-addr", "127.0.0.1:0", "-api-key", testAPIKey,
		"-broker", "rabbitmq-stream://guest:secret@"+down+"/?stream=fanout-test")
	addr, admin := addrs.addr, addrs.admin
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	if code, body := get("http://" + admin + "/readyz"); code != 503 {
		t.Fatalf("/readyz with RabbitMQ down: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/publish", strings.NewReader(`{"channel":"a","data":1}`))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("publish with RabbitMQ down: %d, want 503", resp.StatusCode)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker-retention", "1s"}, "retention 1s is shorter than the history TTL"},
		{[]string{"-broker-retention-bytes", "-1"}, "retention bytes"},
		{[]string{"-broker", "rabbitmq-stream://h:5552/?max-age=10m"}, "set -broker-retention"}, // the URL is the address
	} {
		args := append([]string{"-check-config", "-broker", "rabbitmq-stream://h:5552/"}, tc.args...)
		if err := run(context.Background(), args, &bytes.Buffer{}, io.Discard, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
