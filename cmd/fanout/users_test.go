//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server/pubsub/nats/natstest"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// apiPost posts body to addr's HTTP API at path and returns the status
// and the answer.
func apiPost(t *testing.T, addr, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// channelToken is a channel token for user (none: "") on channel.
func channelToken(t *testing.T, user, channel string) string {
	t.Helper()
	claims := jwt.MapClaims{"channel": channel, "exp": time.Now().Add(time.Hour).Unix()}
	if user != "" {
		claims["sub"] = user
	}
	return signToken(t, claims)
}

// Two fanout processes on one broker (a redis-server, a nats-server), the
// user operations and the per-user flags as gorilla clients see them: a channel token opens a
// private channel (none: refused); /api/unsubscribe on one node removes
// bob from a channel on both, so the next message reaches alice and not
// bob; /api/disconnect on the other closes bob's connections on both with
// the default code 4500 (three of them: two on one node), alice's stay;
// -max-conns-per-user 2 refuses bob's third connection to a node with 429
// and counts it.
func TestUsers_TwoProcesses(t *testing.T) {
	bin := buildFanout(t)
	for _, tc := range []struct {
		name   string
		broker func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return redistest.Start(t).URL() }},
		{"nats", func(t *testing.T) string { return natstest.Start(t).URL() }},
	} {
		t.Run(tc.name, func(t *testing.T) { userOperations(t, bin, tc.broker(t)) })
	}
}

func userOperations(t *testing.T, bin, url string) {
	var ns [2]*node
	for i := range ns {
		ns[i] = startNode(t, bin, "-broker", url, "-api-key", testAPIKey, "-jwt-secret", hookSecret,
			"-private-channels", "private:*", "-max-conns-per-user", "2")
		eventually(t, 30*time.Second, func() error {
			if code, _ := get("http://" + ns[i].admin + "/readyz"); code != http.StatusOK {
				return fmt.Errorf("node %d not ready: %d", i, code)
			}
			return nil
		})
	}
	dial := func(n *node, user string) *websocket.Conn {
		c := dialHooked(t, n.addr, hookToken(t, user, time.Now().Add(time.Hour)))
		send(t, c, `{"op":"subscribe","channel":"news"}`)
		readJSON(t, c, "subscribed")
		send(t, c, `{"op":"subscribe","channel":"private:`+user+`","token":"`+channelToken(t, user, "private:"+user)+`"}`)
		readJSON(t, c, "subscribed")
		return c
	}
	var bobs, alices []*websocket.Conn
	for _, n := range ns {
		bobs, alices = append(bobs, dial(n, "bob")), append(alices, dial(n, "alice"))
	}
	send(t, bobs[0], `{"op":"subscribe","channel":"private:alice"}`)
	if m := readJSON(t, bobs[0], "error"); !strings.Contains(fmt.Sprint(m["reason"]), "private channel") {
		t.Fatalf("private channel without a token: %v", m)
	}

	if code, body := apiPost(t, ns[0].addr, "/api/unsubscribe", `{"user":"bob","channel":"news"}`); code != http.StatusOK {
		t.Fatalf("unsubscribe: %d %s", code, body)
	}
	for _, c := range bobs {
		if m := readJSON(t, c, "unsubscribed"); m["channel"] != "news" {
			t.Fatalf("bob: %v", m)
		}
	}
	publishTo := func(channel, data string) {
		t.Helper()
		if code, body := apiPost(t, ns[1].addr, "/api/publish", `{"channel":"`+channel+`","data":"`+data+`"}`); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	publishTo("news", "after")
	for _, c := range alices {
		if m := readJSON(t, c, "message"); m["channel"] != "news" || m["data"] != "after" {
			t.Fatalf("alice: %v", m)
		}
	}
	// Both nodes delivered the news: a copy for bob would come before this.
	publishTo("private:bob", "marker")
	for _, c := range bobs {
		if m := readJSON(t, c, "message"); m["channel"] != "private:bob" || m["data"] != "marker" {
			t.Fatalf("bob got %v, want only the marker", m)
		}
	}

	bobs = append(bobs, dialHooked(t, ns[1].addr, hookToken(t, "bob", time.Now().Add(time.Hour)))) // his second there
	third, resp, _ := websocket.DefaultDialer.Dial("ws://"+ns[1].addr+"/ws?token="+hookToken(t, "bob", time.Now().Add(time.Hour)), nil)
	if third != nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("bob's third connection to a node: %v, want 429", resp)
	}
	if _, page := get("http://" + ns[1].admin + "/metrics"); metric(page, "fanout_user_conns_refused_total") != "1" {
		t.Fatalf("fanout_user_conns_refused_total %q, want 1", metric(page, "fanout_user_conns_refused_total"))
	}

	if code, body := apiPost(t, ns[1].addr, "/api/disconnect", `{"user":"bob"}`); code != http.StatusOK {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for i, c := range bobs {
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4500 || ce.Text != "disconnected by the server" {
			t.Fatalf("bob's connection to node %d: %v, want close 4500", i, err)
		}
	}
	publishTo("news", "still")
	for _, c := range alices {
		if m := readJSON(t, c, "message"); m["data"] != "still" {
			t.Fatalf("alice: %v", m)
		}
	}
}

// fanout.js (under Node) passes a channel token on subscribe and again,
// fresh from its callback, on the resume after a reconnect (the server
// closed it with 4000); drops a channel the server unsubscribes it from
// (an 'unsubscribed' event); and stays closed after /api/disconnect's
// default 4500.
func TestUsers_FanoutJS(t *testing.T) {
	_, err := exec.LookPath("node")
	_, wsErr := os.Stat("testdata/interop/node_modules/ws")
	testutil.NeedTool(t, err == nil && wsErr == nil, "node and `npm ci --prefix cmd/fanout/testdata/interop`")
	addr := runHooked(t, "-api-key", testAPIKey, "-private-channels", "private:*")
	cmd := exec.Command("node", filepath.Join("testdata", "interop", "users.mjs"), "ws://"+addr+"/ws",
		"http://"+addr, testAPIKey, hookToken(t, "bob", time.Now().Add(time.Hour)), channelToken(t, "bob", "private:1"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("users.mjs: %v", err)
	}
	var r struct {
		TokenCalls   int
		Unsubscribed string
		Position     any
		Reconnects   []int
		Final        struct {
			State  string
			Code   int
			Reason string
		}
		Last string
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.TokenCalls != 2 || r.Unsubscribed != "private:1" || r.Position != nil || len(r.Reconnects) != 1 || r.Reconnects[0] != 4000 ||
		r.Final.State != "closed" || r.Final.Code != 4500 || r.Last != "closed" {
		t.Fatalf("fanout.js: %s", out)
	}
}
