package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRun runs run() with args on 127.0.0.1:0 (JSON logs) and returns the
// addresses it logged for the server and, with -admin-addr, the admin
// listener: no port is picked ahead and lost to another test meanwhile.
func startRun(t *testing.T, ctx context.Context, args ...string) (addr, admin string, done <-chan error) {
	t.Helper()
	addr, admin, done, _ = startRunLogs(t, ctx, args...)
	return addr, admin, done
}

// startRunLogs is startRun that also returns what run logged, for a test to
// read once the addresses are known.
func startRunLogs(t *testing.T, ctx context.Context, args ...string) (addr, admin string, done <-chan error, logs *syncWriter) {
	t.Helper()
	logs = &syncWriter{w: &bytes.Buffer{}}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-log-format", "json"}, args...), &bytes.Buffer{}, logs)
	}()
	wantAdmin := slices.Contains(args, "-admin-addr")
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" || (wantAdmin && admin == "") {
		select {
		case err := <-errc:
			t.Fatalf("run ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("run logged no listening address")
		}
		time.Sleep(10 * time.Millisecond)
		logs.mu.Lock()
		text := logs.w.(*bytes.Buffer).String()
		logs.mu.Unlock()
		for line := range strings.SplitSeq(text, "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			switch l.Msg {
			case "fanout":
				addr = l.Addr
			case "admin listener":
				admin = l.Addr
			}
		}
	}
	return addr, admin, errc, logs
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of an unlabelled sample in a Prometheus text page.
func metric(page, name string) string {
	for line := range strings.SplitSeq(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// The admin listener serves metrics that follow real traffic, liveness and
// a readiness probe that turns 503 once shutdown begins.
func TestAdmin_MetricsAndProbes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, admin, done := startRun(t, ctx, "-admin-addr", "127.0.0.1:0", "-shutdown-timeout", "3s", "-close-timeout", "2s")
	base := "http://" + admin
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get(base + "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := get(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("counted")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	// The flush histogram is observed after the shard's writes return, so
	// the client may read the message a moment before the sample lands.
	var page string
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, page = get(base + "/metrics")
		if got := metric(page, "fanout_broadcast_flush_seconds_count"); (got != "" && got != "0") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for name, want := range map[string]string{
		"fanout_connections_open":          "1",
		"fanout_handshakes_upgraded_total": "1",
		"fanout_messages_in_total":         "1",
		"fanout_broadcasts_total":          "1",
	} {
		if got := metric(page, name); got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	if got := metric(page, "fanout_broadcast_flush_seconds_count"); got == "" || got == "0" {
		t.Errorf("broadcast flush histogram count %q", got)
	}
	if !strings.Contains(page, `fanout_connections_closed_total{reason="slow_consumer"} 0`) || !strings.Contains(page, "go_goroutines") {
		t.Error("metrics page lacks close reasons or Go runtime metrics")
	}
	if code, _ := get(base + "/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ %d", code)
	}
	// A raw client that never answers the close keeps shutdown waiting:
	// readiness must already say 503 meanwhile.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	buf := make([]byte, 256)
	if _, err := raw.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline = time.Now().Add(2 * time.Second)
	for {
		code, _ := get(base + "/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d during shutdown", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// The room honours the token's claims: a read-only subscriber's message is
// refused with 1008 and reaches nobody; a missing token gets 401.
func TestAuth_RoomClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, _, done := startRun(t, ctx, "-jwt-secret", "s3cret", "-auth-required")
	defer func() { cancel(); <-done }()
	token := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("s3cret"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dial := func(tok string) (*websocket.Conn, *http.Response, error) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+tok, nil)
			if resp != nil || time.Now().After(deadline) {
				return c, resp, err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, resp, _ := dial(""); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v, want 401", resp)
	}
	writer, _, err := dial(token(jwt.MapClaims{"sub": "w"}))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, _, err := dial(token(jwt.MapClaims{"sub": "r", "publish": []string{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	_ = reader.WriteMessage(websocket.TextMessage, []byte("should not pass"))
	_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := reader.ReadMessage(); !websocket.IsCloseError(err, 1008) {
		t.Fatalf("read-only client: %v, want close 1008", err)
	}
	if err := writer.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = writer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := writer.ReadMessage(); err != nil || string(p) != "hello" {
		t.Fatalf("writer got %q %v; the refused message must not have been broadcast first", p, err)
	}
}
