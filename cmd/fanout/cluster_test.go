package main

import (
	"bytes"
	"context"
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
	addr := freeAddr(t)
	admins := []string{freeAddr(t), freeAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(admins))
	for _, admin := range admins {
		go func() {
			done <- run(ctx, []string{"-addr", addr, "-reuseport", "-broker", r.URL(), "-admin-addr", admin, "-api-key", "k"},
				&bytes.Buffer{}, &syncWriter{w: io.Discard})
		}()
	}
	defer func() {
		cancel()
		for range admins {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	for _, admin := range admins { // ready only once the broker is subscribed
		deadline := time.Now().Add(10 * time.Second)
		for code, _ := get("http://" + admin + "/readyz"); code != 200; code, _ = get("http://" + admin + "/readyz") {
			if time.Now().After(deadline) {
				t.Fatalf("%s never ready", admin)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
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
	req.Header.Set("X-API-Key", "k")
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
	addr, admin, done := startRun(t, ctx, "-admin-addr", "127.0.0.1:0", "-api-key", "k",
		"-broker", "rabbitmq-stream://guest:secret@"+down+"/?stream=fanout-test")
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
	req.Header.Set("X-API-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("publish with RabbitMQ down: %d, want 503", resp.StatusCode)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-check-config", "-broker", "rabbitmq-stream://h:5552/?max-age=1s"}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "max-age") {
		t.Fatalf("a max-age shorter than the history TTL: %v", err)
	}
}
