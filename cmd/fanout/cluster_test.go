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
	waitReadyz(t, admins...)
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
	if code := apiPublish(t, addr, `{"channel":"all","data":"everyone"}`); code != 200 {
		t.Fatalf("publish: %d", code)
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
	if code := apiPublish(t, addr, `{"channel":"a","data":1}`); code != 503 {
		t.Fatalf("publish with RabbitMQ down: %d, want 503", code)
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

// Two fanout processes on a Redis Cluster of three masters
// (-broker redis-cluster://...): messages published through either reach
// the clients of the other, for channels spread over the masters, and a
// node receives from the cluster only the channels its clients want.
func TestDeploy_RedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	bin := buildFanout(t)
	nodes := []*node{startNode(t, bin, "-broker", c.URL(), "-api-key", testAPIKey), startNode(t, bin, "-broker", c.URL(), "-api-key", testAPIKey)}
	waitReadyz(t, nodes[0].admin, nodes[1].admin)
	const channels = 12 // over the slot groups, so over the masters
	conns := make([]*websocket.Conn, channels)
	for i := range conns { // channel i's subscriber on node i%2
		conns[i] = dialWS(t, fmt.Sprintf("ws://%s/ws?channel=spread-%d", nodes[i%2].addr, i))
		readJSON(t, conns[i], "subscribed")
	}
	for i := range channels { // through the other node
		if code := apiPublish(t, nodes[(i+1)%2].addr, fmt.Sprintf(`{"channel":"spread-%d","data":%d}`, i, i)); code != 200 {
			t.Fatalf("publish %d: %d", i, code)
		}
	}
	for i, conn := range conns {
		if m := readJSON(t, conn, "message"); m["data"] != float64(i) || m["offset"] != 1.0 {
			t.Fatalf("spread-%d got %v", i, m)
		}
	}
	for i, n := range nodes {
		_, page := get("http://" + n.admin + "/metrics")
		if v := metric(page, "fanout_broker_unwanted_messages_total"); v != "0" {
			t.Fatalf("node %d: fanout_broker_unwanted_messages_total %q", i, v)
		}
	}
}

// waitReadyz waits until every admin listener's /readyz answers 200: the
// broker is subscribed.
func waitReadyz(t *testing.T, admins ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		for _, admin := range admins {
			if code, _ := get("http://" + admin + "/readyz"); code != 200 {
				return fmt.Errorf("%s not ready: %d", admin, code)
			}
		}
		return nil
	})
}

// apiPublish posts body to the HTTP API at addr and returns the status.
func apiPublish(t *testing.T, addr, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/publish", strings.NewReader(body))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
