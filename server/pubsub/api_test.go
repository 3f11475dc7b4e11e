package pubsub

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fanout-ws/fanout/server"
	"github.com/gorilla/websocket"
)

// runAPI serves channels and, on the same listener, the HTTP API with key.
func runAPI(t *testing.T, sc server.Config, key string) *testNode {
	t.Helper()
	var api http.Handler
	sc.HTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })
	tn := newNode(t, sc, Config{})
	api = tn.APIHandler(key)
	return tn.serve(t)
}

func post(t *testing.T, url, key, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%d reply is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// The publish API reaches the channel's WebSocket subscribers on the same
// port, reports deliveries, and lists presence.
func TestAPI_PublishAndChannels(t *testing.T) {
	t.Parallel()
	addr := runAPI(t, server.Config{}, "k3y").addr
	base := "http://" + addr
	subs := []*websocket.Conn{dialGorilla(t, "ws://"+addr+"/ws?channel=news"), dialGorilla(t, "ws://"+addr+"/ws?channel=news")}
	for _, c := range subs {
		readEvent(t, c)
	}
	status, out := post(t, base+"/api/publish", "k3y", "application/json", `{"channel":"news","data":{"headline":"up"}}`)
	if status != 200 || out["delivered"] != 2.0 || out["offset"] != 1.0 || out["channel"] != "news" {
		t.Fatalf("%d %v", status, out)
	}
	for _, c := range subs {
		if e := readEvent(t, c); e.Type != "message" || string(e.Data) != `{"headline":"up"}` {
			t.Fatalf("got %+v", e)
		}
	}
	status, out = post(t, base+"/api/publish", "k3y", "", `[{"channel":"news","data":2},{"channel":"sports","data":"goal"}]`)
	results, _ := out["results"].([]any)
	if status != 200 || len(results) != 2 {
		t.Fatalf("batch: %d %v", status, out)
	}
	if r := results[1].(map[string]any); r["channel"] != "sports" || r["offset"] != 1.0 || r["delivered"] != 0.0 {
		t.Fatalf("batch result %v", r)
	}

	req, _ := http.NewRequest(http.MethodGet, base+"/api/channels", nil)
	req.Header.Set("X-API-Key", "k3y")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Channels []ChannelInfo }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Channels) != 1 || list.Channels[0].Channel != "news" || list.Channels[0].Subscribers != 2 || list.Channels[0].Offset != 2 {
		t.Fatalf("channels %+v", list.Channels)
	}
}

// Bad requests get JSON errors with the right status and publish nothing.
func TestAPI_BadRequests(t *testing.T) {
	t.Parallel()
	s := runAPI(t, server.Config{MaxMessageBytes: 1 << 10}, "k3y")
	addr := s.addr
	url := "http://" + addr + "/api/publish"
	for _, tc := range []struct {
		name, key, contentType, body string
		status                       int
		reason                       string
	}{
		{"no key", "", "", `{"channel":"a","data":1}`, 401, "API key"},
		{"wrong key", "nope", "", `{"channel":"a","data":1}`, 401, "API key"},
		{"form body", "k3y", "application/x-www-form-urlencoded", `channel=a`, 415, "application/json"},
		{"not JSON", "k3y", "", `hello`, 400, "invalid character"},
		{"unknown field", "k3y", "", `{"channel":"a","data":1,"x":2}`, 400, `unknown field "x"`},
		{"missing data", "k3y", "", `{"channel":"a"}`, 400, `"data" is missing`},
		{"bad channel", "k3y", "", `{"channel":"a/b c","data":1}`, 400, "bad channel name"},
		{"bad item in batch", "k3y", "", `[{"channel":"a","data":1},{"channel":"","data":1}]`, 400, "[1]: bad channel name: empty"},
		{"empty batch", "k3y", "", `[]`, 400, "empty batch"},
		{"data too large", "k3y", "", `{"channel":"a","data":"` + strings.Repeat("x", 1<<10) + `"}`, 400, "message too large"},
		{"body too large", "k3y", "", `[` + strings.Repeat(`{"channel":"a","data":1},`, 1<<16) + `]`, 413, "body over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, url, tc.key, tc.contentType, tc.body)
			if reason, _ := out["error"].(string); status != tc.status || !strings.Contains(reason, tc.reason) {
				t.Fatalf("got %d %v, want %d with %q", status, out, tc.status, tc.reason)
			}
		})
	}
	if n := s.Stats().Publications; n != 0 {
		t.Fatalf("%d publications from bad requests", n)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-API-Key", "k3y")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /api/publish: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	addr = runAPI(t, server.Config{}, "").addr
	if status, out := post(t, "http://"+addr+"/api/publish", "anything", "", `{"channel":"a","data":1}`); status != 403 {
		t.Fatalf("API without a key: %d %v, want 403", status, out)
	}
}
