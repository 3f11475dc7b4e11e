package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/servertest"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/gorilla/websocket"
)

var eventually = testutil.Eventually

// freeAddr picks a loopback address for a process that must be told its
// port (nginx); run itself reports what it bound (startRun).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testAPIKey is the HTTP API key of startChat's server.
const testAPIKey = "interop-key-0123456789"

// startChat serves the cmd's routes on 127.0.0.1:0 and checks at cleanup
// that every connection is gone.
func startChat(t *testing.T) (*server.Server, string) {
	t.Helper()
	app, err := newChatServer(server.Config{}, pubsub.Config{}, testAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.node.Close) // registered first: runs after the server's shutdown
	addr := servertest.Serve(t, app.srv)
	return app.srv, "ws://" + addr
}

// waitIdle waits for the clients' closes to be processed.
func waitIdle(t *testing.T, srv *server.Server) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if n := srv.Live(); n != 0 {
			return fmt.Errorf("%d connections still open after the client finished", n)
		}
		return nil
	})
}

func runClient(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

func TestInterop_Node(t *testing.T) {
	_, err := exec.LookPath("node")
	_, wsErr := os.Stat("testdata/interop/node_modules/ws")
	testutil.NeedTool(t, err == nil && wsErr == nil, "node and `npm ci --prefix cmd/fanout/testdata/interop`")
	srv, url := startChat(t)
	var tally wireTally
	runClient(t, "node", filepath.Join("testdata", "interop", "client.mjs"), wireTap(t, strings.TrimPrefix(url, "ws://"), &tally))
	waitIdle(t, srv)
	checkCompressed(t, srv, &tally)
}

// checkCompressed asserts that a client that offers permessage-deflate got
// it: compressed frames (RSV1) went on the wire both ways, and each
// compressed broadcast was compressed once.
func checkCompressed(t *testing.T, srv *server.Server, tally *wireTally) {
	t.Helper()
	st := srv.Stats()
	t.Logf("wire: server sent %d data frames, %d compressed; client sent %d, %d compressed; %d compress calls, %d -> %d bytes",
		tally.serverFrames.Load(), tally.serverCompressed.Load(), tally.clientFrames.Load(), tally.clientCompressed.Load(),
		st.CompressCalls, st.CompressBytesIn, st.CompressBytesOut)
	if st.CompressedConns == 0 || tally.serverCompressed.Load() == 0 || tally.clientCompressed.Load() == 0 {
		t.Fatal("permessage-deflate was not used on the wire both ways")
	}
	if st.CompressCalls == 0 || st.CompressBytesOut >= st.CompressBytesIn {
		t.Fatalf("%d compress calls, %d -> %d bytes", st.CompressCalls, st.CompressBytesIn, st.CompressBytesOut)
	}
}

func TestInterop_Python(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-websockets installs
	err := exec.Command(py, "-c", "import websockets").Run()
	testutil.NeedTool(t, err == nil, "apt-get install python3-websockets")
	srv, url := startChat(t)
	var tally wireTally
	runClient(t, py, filepath.Join("testdata", "interop", "client.py"), wireTap(t, strings.TrimPrefix(url, "ws://"), &tally), testAPIKey)
	waitIdle(t, srv)
	checkCompressed(t, srv, &tally)
}

func TestInterop_Gorilla(t *testing.T) {
	srv, url := startChat(t)
	var clients []*websocket.Conn
	for range 3 {
		c, _, err := websocket.DefaultDialer.Dial(url+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for i, c := range clients {
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "gorilla %d", i)); err != nil {
			t.Fatal(err)
		}
		for j, r := range clients {
			_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, p, err := r.ReadMessage(); err != nil || string(p) != fmt.Sprintf("gorilla %d", i) {
				t.Fatalf("client %d got %q %v", j, p, err)
			}
		}
	}
	for _, c := range clients {
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
			t.Fatalf("close: %v", err)
		}
		c.Close()
	}
	waitIdle(t, srv)
}

func TestRun_FlagsEnvAndConfig(t *testing.T) {
	t.Setenv("FANOUT_MAX_CONNS", "1234")
	t.Setenv("FANOUT_WORKERS", "7")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-workers", "9", "-print-config"}, &out, &errOut, nil); err != nil {
		t.Fatal(err, errOut.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(out.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["max_conns"] != 1234.0 || cfg["workers"] != 9.0 {
		t.Fatalf("env then flags: got max_conns=%v workers=%v, want 1234 (env) and 9 (flag wins)", cfg["max_conns"], cfg["workers"])
	}
	if err := run(context.Background(), []string{"-check-config", "-proxy-protocol", "optional"}, &out, &errOut, nil); err == nil || !strings.Contains(err.Error(), "TrustedProxies") {
		t.Fatalf("-proxy-protocol without -trusted-proxies: %v", err)
	}
	out.Reset()
	t.Setenv("FANOUT_PROXY_PROTOCOL", "required")
	if err := run(context.Background(), []string{"-trusted-proxies", "10.1.2.3, 192.0.2.0/24", "-print-config"}, &out, &errOut, nil); err != nil {
		t.Fatal(err, errOut.String())
	}
	cfg = nil
	if err := json.Unmarshal(out.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg["trusted_proxies"]) != "[10.1.2.3/32 192.0.2.0/24]" || cfg["proxy_protocol"] != "required" || cfg["forwarded_header"] != "X-Forwarded-For" {
		t.Fatalf("proxy settings: %v %v %v", cfg["trusted_proxies"], cfg["proxy_protocol"], cfg["forwarded_header"])
	}

	err := run(context.Background(), []string{"-check-config", "-ping-interval", "10s", "-idle-timeout", "5s"}, &out, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "IdleTimeout") {
		t.Fatalf("inconsistent timeouts: %v", err)
	}
	if err := run(context.Background(), []string{"-h"}, &out, &errOut, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(errOut.String(), "-send-queue-bytes") {
		t.Fatal("-h does not document -send-queue-bytes")
	}
}

// The binary serves until SIGTERM-like cancellation and exits cleanly.
func TestRun_ServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrs, done := startRun(t, ctx)
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addrs.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1001) {
		t.Fatalf("client got %v, want close 1001", err)
	}
}

// One port serves the chat room, channels, the demo page, the API and a
// 426 for a plain GET of a WebSocket route.
func TestRoutes_OnePort(t *testing.T) {
	_, url := startChat(t)
	base := strings.Replace(url, "ws://", "http://", 1)
	for path, want := range map[string]int{"/": 200, "/fanout.js": 200, "/ws": 426, "/echo": 426, "/nope": 404, "/api/channels": 401} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	chat := dialWS(t, url+"/ws")
	sub := dialWS(t, url+"/ws?channel=alerts")
	readJSON(t, sub, "subscribed")
	if err := chat.WriteMessage(websocket.TextMessage, []byte(`plain chat line`)); err != nil {
		t.Fatal(err)
	}
	if _, p, err := chat.ReadMessage(); err != nil || string(p) != "plain chat line" {
		t.Fatalf("chat room echo %q %v", p, err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/publish", strings.NewReader(`{"channel":"alerts","data":"fire"}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pub pubsub.Publication
	_ = json.NewDecoder(resp.Body).Decode(&pub)
	resp.Body.Close()
	if resp.StatusCode != 200 || pub.Delivered != 1 {
		t.Fatalf("publish: %d %+v, want 1 delivery", resp.StatusCode, pub)
	}
	if m := readJSON(t, sub, "message"); m["data"] != "fire" {
		t.Fatalf("got %v", m)
	}
	// A channel connection is not in the chat room: plain text is refused.
	if err := sub.WriteMessage(websocket.TextMessage, []byte(`plain chat line`)); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, sub, "error"); !strings.Contains(m["reason"].(string), "control message") {
		t.Fatalf("got %v", m)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(url+"/ws?channel=a&channel=b&since=3", nil); err == nil || resp.StatusCode != 400 {
		t.Fatalf("since with two channels: %v", err)
	}
}

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readJSON reads one JSON message and checks its type.
func readJSON(t *testing.T, c *websocket.Conn, typ string) map[string]any {
	t.Helper()
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil || m["type"] != typ {
		t.Fatalf("got %q, want a %q message", p, typ)
	}
	return m
}

// A client that offers the "fanout" subprotocol speaks the channel
// protocol: it is not in the chat room, so a chat message shaped like a
// channel message never reaches it.
func TestRoutes_FanoutSubprotocolLeavesChatRoom(t *testing.T) {
	_, url := startChat(t)
	d := websocket.Dialer{Subprotocols: []string{"fanout"}}
	client, _, err := d.Dial(url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if client.Subprotocol() != "fanout" {
		t.Fatalf("subprotocol %q", client.Subprotocol())
	}
	if err := client.WriteMessage(websocket.TextMessage, []byte(`{"op":"subscribe","channel":"lobby"}`)); err != nil {
		t.Fatal(err)
	}
	readJSON(t, client, "subscribed")
	chat := dialWS(t, url+"/ws")
	spoof := `{"type":"message","channel":"lobby","offset":999999,"data":"fake"}`
	if err := chat.WriteMessage(websocket.TextMessage, []byte(spoof)); err != nil {
		t.Fatal(err)
	}
	if _, p, err := chat.ReadMessage(); err != nil || string(p) != spoof {
		t.Fatalf("chat room: %q %v", p, err)
	}
	if err := chat.WriteMessage(websocket.TextMessage, []byte(`{"op":"publish","channel":"lobby","data":"real"}`)); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, client, "message"); m["data"] != "real" {
		t.Fatalf("the channel client got %v, want only the real message", m)
	}
}

// An -api-key that protects nothing is refused at start: a short one, or
// one the documentation shows (README.md and deploy/, defaults included).
func TestRun_APIKeyRefused(t *testing.T) {
	check := func(key string) error {
		var out, errOut bytes.Buffer
		return run(context.Background(), []string{"-check-config", "-api-key", key}, &out, &errOut, nil)
	}
	for _, key := range []string{"", "0123456789abcdef", "kJ8x2mQ9vR4tW7yZ1aB3cD5e"} {
		if err := check(key); err != nil {
			t.Errorf("-api-key %q refused: %v", key, err)
		}
	}
	if err := check("0123456789abcde"); err == nil || !strings.Contains(err.Error(), "-api-key") {
		t.Errorf("a 15-byte -api-key: %v, want refused", err)
	}
	t.Setenv("FANOUT_API_KEY", "short")
	if err := check(""); err != nil {
		t.Errorf("-api-key \"\" over FANOUT_API_KEY: %v", err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-check-config"}, &out, &errOut, nil); err == nil {
		t.Error("FANOUT_API_KEY=short accepted")
	}

	// A literal key after -api-key, FANOUT_API_KEY= or a compose default,
	// "Bearer " or X-API-Key; "$VAR" and "<key>" are not literals.
	example := regexp.MustCompile(`(?:-api-key[ =]|FANOUT_API_KEY=|FANOUT_API_KEY:-|Bearer |X-API-Key: ?)([^\s'"$<\\}]+)`)
	docs, _ := filepath.Glob("../../deploy/*")
	docs = append(docs, "../../README.md", "../../Dockerfile")
	seen := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			continue // a directory
		}
		for _, m := range example.FindAllSubmatch(b, -1) {
			seen++
			if err := check(string(m[1])); err == nil {
				t.Errorf("%s shows -api-key %q, and fanout starts with it", doc, m[1])
			}
		}
	}
	t.Logf("%d example keys in the documentation, all refused", seen)
}

// A mistyped -broker URL is refused without showing its password: the
// error goes to the terminal and to logs.
func TestRun_BrokerURLPasswordHidden(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"redis://user:hunter2@host:badport/0", "redis://user:hunter2@[::1/0", "redis://user:hunter2@host:6379/zero",
		"rabbitmq-stream://user:hunter2@host:x/v", "rabbitmq-stream://user:hunter2@[::1/v",
		"nats://user:hunter2@[::1", "nats://user:hunter2@:4222",
		"redis-cluster://user:hunter2@host:badport,host:6379", "redis-cluster://user:hunter2@[::1,host:6379", "redis-cluster://user:hunter2@host:6379?dial_timeout=x",
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"-check-config", "-broker", u}, &out, &errOut, nil)
		if err == nil || strings.Contains(err.Error()+errOut.String(), "hunter2") {
			t.Errorf("-broker %s: %v, want refused without the password", u, err)
		}
	}
}
