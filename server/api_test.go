package server

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// runAPI serves channels and, on the same listener, the HTTP API with key.
func runAPI(t *testing.T, cfg Config, key string) (*Server, string) {
	t.Helper()
	var api http.Handler
	cfg.HTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })
	cfg = channelConfig(cfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api = s.APIHandler(key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	<-s.Ready()
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addr().String()
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
	_, addr := runAPI(t, Config{}, "k3y")
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
	s, addr := runAPI(t, Config{MaxMessageBytes: 1 << 10}, "k3y")
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

	_, addr = runAPI(t, Config{}, "")
	if status, out := post(t, "http://"+addr+"/api/publish", "anything", "", `{"channel":"a","data":1}`); status != 403 {
		t.Fatalf("API without a key: %d %v, want 403", status, out)
	}
}

// Plain HTTP on Serve's listener reaches HTTPHandler, keep-alive included,
// with a body that arrived with the head; upgrades on the same port still
// work; the HTTP connection counts against MaxConns until it closes.
func TestHTTPHandler_SharesTheListener(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxConns: 3, HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})}
	s, addr := runServer(t, cfg)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	for i, req := range []string{
		"GET /page HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	} {
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := []string{"GET /page ", "POST /api hello"}[i]
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	if live := s.Stats().Live; live != 1 {
		t.Fatalf("live %d with one HTTP connection, want 1", live)
	}
	ws := dialGorilla(t, "ws://"+addr+"/echo")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still ws")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "still ws" {
		t.Fatalf("echo %q %v", p, err)
	}
	nc.Close()
	eventually(t, 5*time.Second, func() error {
		if live := s.Stats().Live; live != 1 {
			return fmt.Errorf("live %d after the HTTP connection closed, want 1", live)
		}
		return nil
	})
}

// Over TLS, plain HTTPS requests reach HTTPHandler too.
func TestHTTPHandler_TLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	cfg := Config{
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}},
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secure page") }),
	}
	_, addr := runServer(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	for range 2 { // the second request reuses the connection
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "secure page" {
			t.Fatalf("got %q", body)
		}
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, _, err := d.Dial("wss://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("x"))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "x" {
		t.Fatalf("wss echo %q %v", p, err)
	}
}
