package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// startBackend runs the Express app of testdata/interop/backend.mjs on
// loopback and returns its base URL.
func startBackend(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("node")
	_, expErr := os.Stat("testdata/interop/node_modules/express")
	testutil.NeedTool(t, err == nil && expErr == nil, "node and `npm ci --prefix cmd/fanout/testdata/interop`")
	cmd := exec.Command("node", filepath.Join("testdata", "interop", "backend.mjs"))
	stdin, err := cmd.StdinPipe() // closed at cleanup: the app exits
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if cmd.Wait() != nil {
			_ = cmd.Process.Kill()
		}
	})
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("backend reported no port: %v", err)
	}
	return "http://127.0.0.1:" + strings.TrimSpace(port)
}

const hookSecret = "hook-s3cret"

// runHooked runs the command with -jwt-secret hookSecret and args until
// the test ends, and returns its address.
func runHooked(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addrs, _ := startRun(t, ctx, append([]string{"-jwt-secret", hookSecret}, args...)...)
	return addrs.addr
}

func hookToken(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	return signToken(t, jwt.MapClaims{"sub": sub, "exp": exp.Unix()})
}

// signToken signs claims with hookSecret (HS256).
func signToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(hookSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialHooked opens a channel-protocol connection with a token and a
// session cookie.
func dialHooked(t *testing.T, addr, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"fanout"}}
	c, _, err := d.Dial("ws://"+addr+"/ws?token="+token, http.Header{"Cookie": {"session=ok"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return c
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// readEach reads one message of each type, in any order: a publisher's
// ack and its own copy of the message race.
func readEach(t *testing.T, c *websocket.Conn, types ...string) map[string]map[string]any {
	t.Helper()
	got := map[string]map[string]any{}
	for range types {
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		typ, _ := m["type"].(string)
		if !slices.Contains(types, typ) || got[typ] != nil {
			t.Fatalf("got %v, want one each of %v", m, types)
		}
		got[typ] = m
	}
	return got
}

// awaitHeld waits until the backend holds one hook's answer.
func awaitHeld(t *testing.T, backend string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		var held int
		getJSON(t, backend+"/held", &held)
		if held != 1 {
			return fmt.Errorf("%d hooks held, want 1", held)
		}
		return nil
	})
}

// release makes the backend answer the hooks it holds.
func release(t *testing.T, backend string) {
	t.Helper()
	resp, err := http.Post(backend+"/release", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// getJSON GETs a backend URL into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// The control-message hooks against a real Express backend: a denied
// subscribe gets an error reply with the backend's code, an allowed one
// subscribes, the publish hook rewrites data, rpc round-trips, the
// forwarded Cookie reaches the backend, and a publish whose hook hangs
// (one read worker) delays nobody's delivery, its own connection's
// included.
func TestHooks_Express(t *testing.T) {
	backend := startBackend(t)
	addr := runHooked(t, "-workers", "1",
		"-proxy-subscribe-url", backend+"/subscribe", "-proxy-publish-url", backend+"/publish",
		"-proxy-rpc-url", backend+"/rpc", "-proxy-headers", "Cookie", "-proxy-timeout", "30s")
	tok := hookToken(t, "bob", time.Now().Add(time.Hour))
	sub := dialHooked(t, addr, tok)
	pub := dialHooked(t, addr, tok)

	send(t, sub, `{"op":"subscribe","channel":"secret:plans","id":1}`)
	if m := readJSON(t, sub, "error"); m["id"] != 1.0 || m["code"] != 403.0 || m["reason"] != "not a member of secret:plans" {
		t.Fatalf("denied subscribe: %v", m)
	}
	for _, c := range []*websocket.Conn{sub, pub} {
		send(t, c, `{"op":"subscribe","channel":"room","id":2}`)
		if m := readJSON(t, c, "subscribed"); m["id"] != 2.0 || m["channel"] != "room" {
			t.Fatalf("allowed subscribe: %v", m)
		}
	}

	send(t, pub, `{"op":"publish","channel":"room","data":"hi","id":3}`)
	if m := readJSON(t, sub, "message"); fmt.Sprint(m["data"]) != "map[by:bob text:hi]" {
		t.Fatalf("the publish hook's data was not published: %v", m)
	}
	if m := readEach(t, pub, "message", "published")["published"]; m["id"] != 3.0 {
		t.Fatalf("publish ack: %v", m)
	}

	send(t, pub, `{"op":"rpc","method":"add","data":{"a":2,"b":3},"id":4}`)
	if m := readJSON(t, pub, "rpc"); m["id"] != 4.0 || fmt.Sprint(m["data"]) != "map[sum:5]" {
		t.Fatalf("rpc: %v", m)
	}
	send(t, pub, `{"op":"rpc","method":"nope","id":5}`)
	if m := readJSON(t, pub, "error"); m["id"] != 5.0 || m["code"] != 404.0 {
		t.Fatalf("refused rpc: %v", m)
	}

	var seen []struct {
		Path string
		Body struct {
			User    string
			Headers map[string]string
		}
	}
	getJSON(t, backend+"/seen", &seen)
	if len(seen) == 0 || seen[0].Body.Headers["Cookie"] != "session=ok" || seen[0].Body.User != "bob" {
		t.Fatalf("the backend saw %+v, want bob's cookie", seen)
	}

	// The hook of a publish to slow:1 hangs until released; meanwhile
	// room messages reach both connections, the hanging one's included.
	send(t, pub, `{"op":"publish","channel":"slow:1","data":"wait","id":6}`)
	awaitHeld(t, backend)
	send(t, sub, `{"op":"publish","channel":"room","data":"meanwhile","id":7}`)
	for _, m := range []map[string]any{readEach(t, sub, "message", "published")["message"], readJSON(t, pub, "message")} {
		if fmt.Sprint(m["data"]) != "map[by:bob text:meanwhile]" {
			t.Fatalf("while a hook hangs: %v", m)
		}
	}
	var held int
	if getJSON(t, backend+"/held", &held); held != 1 {
		t.Fatalf("the slow hook answered (%d held) before the others' delivery was checked", held)
	}
	release(t, backend)
	if m := readJSON(t, pub, "published"); m["id"] != 6.0 {
		t.Fatalf("the slow publish's ack: %v", m)
	}
}

// A backend that is down denies: the client gets an error reply saying
// so, and its connection stays open.
func TestHooks_BackendDown(t *testing.T) {
	dead := "http://" + freeAddr(t) // nothing listens there
	addr := runHooked(t, "-proxy-rpc-url", dead+"/rpc", "-proxy-subscribe-url", dead+"/subscribe")
	c := dialHooked(t, addr, hookToken(t, "bob", time.Now().Add(time.Hour)))
	send(t, c, `{"op":"rpc","method":"add","data":{},"id":1}`)
	if m := readJSON(t, c, "error"); m["id"] != 1.0 || !strings.HasPrefix(fmt.Sprint(m["reason"]), "backend unavailable") {
		t.Fatalf("rpc with the backend down: %v", m)
	}
	send(t, c, `{"op":"subscribe","channel":"room","id":2}`)
	if m := readJSON(t, c, "error"); m["id"] != 2.0 || !strings.HasPrefix(fmt.Sprint(m["reason"]), "backend unavailable") {
		t.Fatalf("subscribe with the backend down: %v", m)
	}
}

// Refresh keeps a connection alive past its first token's exp: told it
// is expiring, the client sends a fresh token; a token of another user is
// refused; a connection that does not refresh is closed at exp.
func TestHooks_TokenRefresh(t *testing.T) {
	addr := runHooked(t)
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second) // as "exp" holds it
	refreshed := dialHooked(t, addr, hookToken(t, "bob", exp))
	lapsed := dialHooked(t, addr, hookToken(t, "bob", exp))
	for _, c := range []*websocket.Conn{refreshed, lapsed} {
		if m := readJSON(t, c, "expiring"); m["in"].(float64) > 3 {
			t.Fatalf("expiring: %v", m)
		}
	}
	send(t, refreshed, fmt.Sprintf(`{"op":"refresh","token":%q,"id":1}`, hookToken(t, "eve", time.Now().Add(time.Hour))))
	if m := readJSON(t, refreshed, "error"); m["id"] != 1.0 {
		t.Fatalf("refresh as another user: %v", m)
	}
	later := time.Now().Add(time.Hour)
	send(t, refreshed, fmt.Sprintf(`{"op":"refresh","token":%q,"id":2}`, hookToken(t, "bob", later)))
	if m := readJSON(t, refreshed, "refreshed"); m["id"] != 2.0 || int64(m["expires"].(float64)) != later.Unix() {
		t.Fatalf("refresh: %v", m)
	}
	if _, _, err := lapsed.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("without a refresh: %v, want 1008 at exp", err)
	}
	if time.Now().Before(exp) {
		t.Fatal("closed before exp")
	}
	send(t, refreshed, `{"op":"subscribe","channel":"room","id":3}`)
	readJSON(t, refreshed, "subscribed")
}

// With -proxy-refresh-url the backend extends the session: the client,
// told nothing but "refreshed", outlives its token's exp.
func TestHooks_BackendRefresh(t *testing.T) {
	backend := startBackend(t)
	addr := runHooked(t, "-proxy-refresh-url", backend+"/refresh")
	exp := time.Now().Add(3 * time.Second)
	c := dialHooked(t, addr, hookToken(t, "bob", exp))
	if m := readJSON(t, c, "refreshed"); int64(m["expires"].(float64)) < exp.Unix()+30 {
		t.Fatalf("backend refresh: %v", m)
	}
	time.Sleep(time.Until(exp) + time.Second) // past the first exp, and a sweep tick
	send(t, c, `{"op":"subscribe","channel":"room","id":1}`)
	readJSON(t, c, "subscribed")
}

// fanout.js (under Node) refreshes through its refreshToken callback when
// told its token is expiring, and keeps its connection past the first
// token's exp: rpc round-trips before and after it, with no reconnect.
func TestHooks_FanoutJSRefresh(t *testing.T) {
	backend := startBackend(t)
	addr := runHooked(t, "-proxy-rpc-url", backend+"/rpc")
	exp := time.Now().Add(3 * time.Second)
	fresh := time.Now().Add(time.Hour)
	cmd := exec.Command("node", filepath.Join("testdata", "interop", "refresh.mjs"),
		"ws://"+addr+"/ws?token="+hookToken(t, "bob", exp), hookToken(t, "bob", fresh), fmt.Sprint(exp.Unix()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("refresh.mjs: %v", err)
	}
	var r struct {
		Refreshed     int64
		Before, After struct{ Sum int }
		Reconnects    int
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.Refreshed != fresh.Unix() || r.Before.Sum != 5 || r.After.Sum != 42 || r.Reconnects != 0 {
		t.Fatalf("fanout.js: %+v, want refreshed to %d, sums 5 and 42, no reconnect", r, fresh.Unix())
	}
}

// The connect hook decides the upgrade off the read workers: no session
// is refused with the backend's 401; a session is admitted as the
// backend's user, subscribed to the channels it names; a connect whose
// hook hangs (one read worker) delays no other client, and completes
// once the backend answers; a backend that is down refuses with 503.
func TestHooks_Connect(t *testing.T) {
	backend := startBackend(t)
	addr := runHooked(t, "-workers", "1", "-proxy-connect-url", backend+"/connect",
		"-proxy-rpc-url", backend+"/rpc", "-proxy-headers", "Cookie", "-proxy-timeout", "30s")
	dial := func(cookie string) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{Subprotocols: []string{"fanout"}, HandshakeTimeout: 20 * time.Second}
		return d.Dial("ws://"+addr+"/ws", http.Header{"Cookie": {cookie}})
	}
	if _, resp, err := dial("session=none"); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no session: %v %v, want the backend's 401", resp, err)
	}

	type result struct {
		c   *websocket.Conn
		err error
	}
	slow := make(chan result, 1)
	go func() {
		c, _, err := dial("session=slow")
		slow <- result{c, err}
	}()
	awaitHeld(t, backend)
	c, _, err := dial("session=ok")
	if err != nil {
		t.Fatalf("a session, while another connect hangs: %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if m := readJSON(t, c, "subscribed"); m["channel"] != "news" {
		t.Fatalf("the backend's channels: %v", m)
	}
	send(t, c, `{"op":"rpc","method":"add","data":{"a":1,"b":1},"id":1}`)
	readJSON(t, c, "rpc")
	var seen []struct {
		Path string
		Body struct{ User string }
	}
	getJSON(t, backend+"/seen", &seen)
	if last := seen[len(seen)-1]; last.Path != "/rpc" || last.Body.User != "alice" {
		t.Fatalf("the backend saw %+v last, want an rpc from alice", last)
	}
	select {
	case r := <-slow:
		t.Fatalf("the held connect completed before its hook answered: %v", r.err)
	default:
	}
	release(t, backend)
	r := <-slow
	if r.err != nil {
		t.Fatalf("the held connect, released: %v", r.err)
	}
	defer r.c.Close()
	_ = r.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	readJSON(t, r.c, "subscribed")
}

// A connect hook whose backend is down refuses the upgrade with 503.
func TestHooks_ConnectBackendDown(t *testing.T) {
	addr := runHooked(t, "-proxy-connect-url", "http://"+freeAddr(t)+"/connect")
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("backend down: %v %v, want 503", resp, err)
	}
}
