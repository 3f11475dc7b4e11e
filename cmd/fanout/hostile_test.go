package main

// Hostile-client and operator checks at the command level (issue #10; the
// engine's suite is server/hostile_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/gorilla/websocket"
)

// Finding 13: -check-config fails, naming the flag, on what would stop the
// server at start.
func TestHostile_CheckConfigCatchesStartFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cert, key, "check")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error; "" means "configuration ok"
	}{
		{"valid tls", []string{"-tls-cert", cert, "-tls-key", key}, ""},
		{"missing cert file", []string{"-tls-cert", missing, "-tls-key", key}, "-tls-cert"},
		{"cert without key", []string{"-tls-cert", cert}, "-tls-cert needs -tls-key"},
		{"key without cert", []string{"-tls-key", key}, "-tls-key needs -tls-cert"},
		{"missing public key", []string{"-jwt-public-key", missing}, "-jwt-public-key"},
		{"unparsable public key", []string{"-jwt-public-key", garbage}, "neither an RSA nor an ECDSA"},
		{"auth required without keys", []string{"-auth-required"}, "-auth-required needs"},
		{"bad broker url", []string{"-broker", "http://nowhere"}, "-broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"-check-config"}, tc.args...), &out, &bytes.Buffer{}, nil)
			switch {
			case tc.want == "" && (err != nil || !strings.Contains(out.String(), "configuration ok")):
				t.Fatalf("got %v %q, want configuration ok", err, out.String())
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v (%q), want an error naming %q", err, out.String(), tc.want)
			}
		})
	}
}

// Finding 11: secrets never show on the admin listener, and an admin
// listener open to the network is warned about.
func TestHostile_AdminHidesSecrets(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs, done, logs := startRunLogs(t, ctx, "-admin-addr", "0.0.0.0:0", "-api-key", "sekrit-api-key-0123", "-jwt-secret=sekrit-jwt")
	port := addrs.admin[strings.LastIndex(addrs.admin, ":"):]
	for _, path := range []string{"/debug/pprof/cmdline", "/metrics", "/debug/pprof/"} {
		status, body := get("http://127.0.0.1" + port + path)
		if status != 200 || strings.Contains(body, "sekrit") {
			t.Fatalf("%s: %d, secrets shown: %v", path, status, strings.Contains(body, "sekrit"))
		}
		if path == "/debug/pprof/cmdline" && strings.Count(body, "REDACTED") != 2 {
			t.Fatalf("cmdline %q, want both secrets REDACTED", body)
		}
	}
	text := logs.String()
	if !strings.Contains(text, "admin listener is not on a loopback address") || strings.Contains(text, "sekrit") {
		t.Fatalf("logs: want the non-loopback warning and no secret:\n%s", text)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestRedactArgs(t *testing.T) {
	t.Parallel()
	got := redactArgs([]string{"-api-key", "a", "--jwt-secret=b", "-addr", ":1", "-broker", "redis://u:pw@h:6379/0", "--api-key=c", "-jwt-secret"})
	want := []string{"-api-key", "REDACTED", "--jwt-secret=REDACTED", "-addr", ":1", "-broker", "redis://u:xxxxx@h:6379/0", "--api-key=REDACTED", "-jwt-secret"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// Finding 10 at the command level: -anonymous-subscribe limits what a
// client without a token may join, through the real channel routes.
func TestHostile_AnonymousPermissions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs, done, logs := startRunLogs(t, ctx, "-jwt-secret", "s3cret-for-test", "-anonymous-subscribe", "public/*", "-anonymous-publish", "")
	addr := addrs.addr
	for query, want := range map[string]int{"channel=public/news": 101, "channel=private": 403} {
		c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?"+query, nil)
		if c != nil {
			c.Close()
		}
		if resp == nil || resp.StatusCode != want {
			t.Fatalf("%s: %v %v, want %d", query, resp, err, want)
		}
	}
	warned := strings.Contains(logs.String(), "anonymous clients may")
	if warned {
		t.Fatal("warned about anonymous access although it is explicit")
	}
	cancel()
	<-done
}

// Finding 5, fd reserve: with an open-files limit of 400 (a child process:
// the limit is per process), a flood of silent sockets fills the
// connection ceiling and the refusal cap, yet the admin listener keeps
// answering, an over-capacity client gets 503 at once, and the server
// serves again once the flood leaves.
func TestHostile_FDReserveUnderFlood(t *testing.T) {
	if os.Getenv("FANOUT_HOSTILE_CHILD") == "1" {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 400, Max: 400}); err != nil {
			t.Fatal(err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := run(ctx, []string{"-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-log-format", "json", "-handshake-timeout", "3s", "-drain-duration", "0"}, io.Discard, os.Stderr, nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostile_FDReserveUnderFlood$")
	cmd.Env = append(os.Environ(), "FANOUT_HOSTILE_CHILD=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var addr, admin string
	sc := bufio.NewScanner(stderr)
	for (addr == "" || admin == "") && sc.Scan() {
		var l struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			switch l.Msg {
			case "fanout":
				addr = l.Addr
			case "admin listener":
				admin = l.Addr
			}
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if addr == "" || admin == "" {
		t.Fatal("the child logged no addresses")
	}
	// Ceiling 400-256 = 144 slots, then 128 lingering refusals, then
	// refusals closed at once: 500 sockets go past all three.
	var flood []net.Conn
	for i := range 500 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}}
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		flood = append(flood, nc)
	}
	defer func() {
		for _, nc := range flood {
			nc.Close()
		}
	}()
	for range 20 {
		if status, body := get("http://" + admin + "/healthz"); status != 200 {
			t.Fatalf("admin listener during the flood: %d %s", status, body)
		}
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(nc).ReadString('\n'); err != nil || !strings.Contains(line, "503") {
		t.Fatalf("over capacity: %q %v, want 503 without sending a request", line, err)
	}
	for _, nc := range flood {
		nc.Close()
	}
	flood = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no upgrade after the flood left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
}

// Issue 24, finding 13: a chat-room member cannot forge channel messages
// to room clients, because a room connection has no channels: its
// subscribes are refused (channels need /ws?channel= or the fanout
// subprotocol), so a forged {"type":"message",...} from the room never
// sits beside real ones. Before the fix the victim's subscribe was
// accepted and the forged offset made its client drop every real message.
func TestHostile_RoomCannotForgeChannelMessages(t *testing.T) {
	t.Parallel()
	_, url := startChat(t)
	victim, attacker := dialWS(t, url+"/ws"), dialWS(t, url+"/ws")
	if err := victim.WriteMessage(websocket.TextMessage, []byte(`{"op":"subscribe","channel":"prices","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, victim, "error"); !strings.Contains(m["reason"].(string), "chat room has no channels") {
		t.Fatalf("room client's subscribe: %v, want refused", m)
	}
	forged := `{"type":"message","channel":"prices","offset":1000000000,"data":"forged"}`
	if err := attacker.WriteMessage(websocket.TextMessage, []byte(forged)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{attacker, victim} { // the room is a room: raw chat
		if _, p, err := c.ReadMessage(); err != nil || string(p) != forged {
			t.Fatalf("room: %q %v", p, err)
		}
	}
	sub := dialWS(t, url+"/ws?channel=prices")
	readJSON(t, sub, "subscribed")
	req, _ := http.NewRequest(http.MethodPost, strings.Replace(url, "ws://", "http://", 1)+"/api/publish", strings.NewReader(`{"channel":"prices","data":"real"}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pub pubsub.Publication
	_ = json.NewDecoder(resp.Body).Decode(&pub)
	resp.Body.Close()
	if pub.Delivered != 1 {
		t.Fatalf("publish reached %d connections, want the channel subscriber alone", pub.Delivered)
	}
	if m := readJSON(t, sub, "message"); m["data"] != "real" || m["offset"] != 1.0 {
		t.Fatalf("subscriber got %v", m)
	}
}
