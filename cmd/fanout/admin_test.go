package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// startRun runs run() with args (on 127.0.0.1:0 unless args name -addr)
// and returns the addresses it reports: no port is picked ahead and lost
// to another test meanwhile. done yields run's result once ctx is done.
func startRun(t *testing.T, ctx context.Context, args ...string) (addrs listening, done <-chan error) {
	t.Helper()
	addrs, done, _ = startRunLogs(t, ctx, args...)
	return addrs, done
}

// startRunLogs is startRun that also returns what run logged, for a test
// to read once it serves.
func startRunLogs(t *testing.T, ctx context.Context, args ...string) (addrs listening, done <-chan error, logs *testutil.SyncBuffer) {
	t.Helper()
	logs = &testutil.SyncBuffer{}
	bound := make(chan listening, 1)
	errc := make(chan error, 1)
	go func() {
		// No paced drain unless a test asks: cancel closes at once.
		errc <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-drain-duration", "0"}, args...), &bytes.Buffer{}, logs, func(l listening) { bound <- l })
	}()
	select {
	case addrs = <-bound:
	case err := <-errc:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run reported no address")
	}
	return addrs, errc, logs
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
	addrs, done := startRun(t, ctx, "-admin-addr", "127.0.0.1:0", "-shutdown-timeout", "3s", "-close-timeout", "2s")
	addr, admin := addrs.addr, addrs.admin
	base := "http://" + admin
	if code, _ := get(base + "/readyz"); code != 200 { // ready once run reports its addresses
		t.Fatalf("/readyz %d", code)
	}
	if code, _ := get(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if err := run(ctx, []string{"probe", base + "/readyz"}, io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("probe of a ready node: %v", err)
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
	eventually(t, 5*time.Second, func() error {
		_, page = get(base + "/metrics")
		if got := metric(page, "fanout_broadcast_flush_seconds_count"); got == "" || got == "0" {
			return fmt.Errorf("broadcast flush histogram count %q", got)
		}
		if got := metric(page, "fanout_timer_sweep_seconds_count"); got == "" || got == "0" {
			return fmt.Errorf("timer sweep histogram count %q", got)
		}
		return nil
	})
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
	if !strings.Contains(page, `fanout_connections_closed_total{reason="slow_consumer"} 0`) || !strings.Contains(page, "go_goroutines") ||
		!strings.Contains(page, "go_sched_pauses_total_gc_seconds_bucket") {
		t.Error("metrics page lacks close reasons, Go runtime metrics or the GC pause histogram")
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
	eventually(t, 2*time.Second, func() error {
		if code, _ := get(base + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz still %d during shutdown", code)
		}
		if run(context.Background(), []string{"probe", base + "/readyz"}, io.Discard, io.Discard, nil) == nil {
			return fmt.Errorf("probe succeeded during shutdown")
		}
		return nil
	})
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// The room honours the token's claims: a read-only subscriber's message is
// refused with 1008 and reaches nobody; a missing token gets 401.
func TestAuth_RoomClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrs, done := startRun(t, ctx, "-jwt-secret", "s3cret", "-auth-required")
	addr := addrs.addr
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
		return websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+tok, nil)
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
