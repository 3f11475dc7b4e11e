package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
)

// channelStub speaks the part of the channels protocol (spec/channels.md)
// the generator uses: /ws?channel=X subscriptions, {"op":"publish"}
// messages and POST /api/publish (single and batch), each message sent to
// the channel's subscribers as {"type":"message",...} with offsets
// counting up per channel. It lets the generator's channel mode be tested
// without cmd/fanout; TestSmoke_ChannelsRealServer runs the real one.
type channelStub struct {
	srv *server.Server
	mu  sync.Mutex
	chs map[string]*stubChannel
}

type stubChannel struct {
	mu     sync.Mutex
	hub    *server.Hub
	offset int
}

func (s *channelStub) channel(name string) *stubChannel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chs[name]
	if ch == nil {
		ch = &stubChannel{hub: s.srv.NewHub()}
		s.chs[name] = ch
	}
	return ch
}

// publish sends data to the channel's subscribers and returns the offset
// and how many subscribers it was queued for.
func (s *channelStub) publish(name string, data json.RawMessage) (int, int) {
	ch := s.channel(name)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.offset++
	env := fmt.Appendf(nil, `{"type":"message","channel":%q,"offset":%d,"data":%s}`, name, ch.offset, data)
	ch.hub.Broadcast(frame.OpText, env)
	return ch.offset, ch.hub.Len()
}

type stubPub struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// stubKey is the API key of the stub and of the real server the smoke
// runs use; long enough that finding it in an output is no accident.
const stubKey = "api-key-4f2a9c71"

// ServeHTTP is POST /api/publish with key stubKey.
func (s *channelStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+stubKey {
		http.Error(w, `{"error":"key"}`, http.StatusUnauthorized)
		return
	}
	var body json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":"json"}`, http.StatusBadRequest)
		return
	}
	type res struct {
		Channel   string `json:"channel"`
		Offset    int    `json:"offset"`
		Delivered int    `json:"delivered"`
	}
	if bytes.HasPrefix(body, []byte("[")) {
		var ps []stubPub
		if err := json.Unmarshal(body, &ps); err != nil {
			http.Error(w, `{"error":"json"}`, http.StatusBadRequest)
			return
		}
		var out struct {
			Results []res `json:"results"`
		}
		for _, p := range ps {
			off, n := s.publish(p.Channel, p.Data)
			out.Results = append(out.Results, res{p.Channel, off, n})
		}
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	var p stubPub
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, `{"error":"json"}`, http.StatusBadRequest)
		return
	}
	off, n := s.publish(p.Channel, p.Data)
	_ = json.NewEncoder(w).Encode(res{p.Channel, off, n})
}

// newChannelStub returns the WebSocket base URL and the publish URL.
func newChannelStub(t *testing.T) (wsURL, publishURL string) {
	t.Helper()
	s := &channelStub{chs: map[string]*stubChannel{}}
	srv, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, r *server.Request) error {
			for _, name := range r.Query()["channel"] {
				ch := s.channel(name)
				ch.mu.Lock()
				off := ch.offset
				err := ch.hub.Join(c)
				ch.mu.Unlock()
				if err != nil {
					return err
				}
				_ = c.Send(frame.OpText, fmt.Appendf(nil, `{"type":"subscribed","channel":%q,"epoch":"E","offset":%d}`, name, off))
			}
			return nil
		},
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) {
			var p stubPub
			if json.Unmarshal(data, &p) != nil || p.Op != "publish" {
				_ = c.Send(frame.OpText, []byte(`{"type":"error","reason":"expected publish"}`))
				return
			}
			off, _ := s.publish(p.Channel, p.Data)
			_ = c.Send(frame.OpText, fmt.Appendf(nil, `{"type":"published","channel":%q,"offset":%d}`, p.Channel, off))
		},
		SendQueueBytes: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	addr := serve(t, srv)
	api := httptest.NewServer(s)
	t.Cleanup(api.Close)
	return "ws://" + addr + "/ws", api.URL + "/api/publish"
}

// channelArgs are the smoke runs of channel mode: over the WebSocket
// publish op and over the API, single and batched.
var channelArgs = []struct {
	name  string
	extra []string
}{
	{"ws", []string{"-channels", "10"}},
	{"api", []string{"-channels", "10", "-publishers", "3", "-api"}},
	{"api-batch", []string{"-channels", "50", "-publishers", "2", "-batch", "10", "-api"}},
	{"api-one-channel", []string{"-channels", "1", "-api"}},
	// Three channels over two URLs (of one server, so joined): every
	// channel has subscribers on both.
	{"joined", []string{"-channels", "3", "-joined", "-two-urls"}},
}

// runChannelSmoke runs each of channelArgs with 300 subscribers against
// wsURL, with extra flags, and checks: every message reached every
// subscriber of its channel, in order, and nothing else arrived.
func runChannelSmoke(t *testing.T, wsURL, publishURL string, pid int, flags ...string) {
	for _, tc := range channelArgs {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{
				"-url", wsURL, "-scenario", "broadcast", "-conns", "300", "-rate", "3000",
				"-duration", "1s", "-settle", "100ms", "-drain", "1500ms", "-msg-rate", "20",
				"-server-pid", strconv.Itoa(pid), "-label", "smoke",
			}
			args = append(args, flags...)
			for _, a := range tc.extra {
				switch a {
				case "-api":
					args = append(args, "-publish-url", publishURL, "-api-key", stubKey)
					continue
				case "-two-urls":
					args[1] = wsURL + "," + wsURL
					continue
				}
				args = append(args, a)
			}
			res, stdout := runJSON(t, args...)
			k := int64(res.Config.Channels)
			if res.Connected != 300 || res.DialErrors != 0 || res.Disconnected != 0 {
				t.Fatalf("connected %d, dial errors %d, disconnected %d", res.Connected, res.DialErrors, res.Disconnected)
			}
			// 20 msg/s per channel for 1 s: about 20 per channel (fewer when
			// the race detector and a busy machine slow the publishers),
			// 300/K subscribers each.
			if res.Sent < 5*k || res.Deliveries < res.Sent*300/k*9/10 {
				t.Fatalf("%d messages published, %d deliveries (%s)", res.Sent, res.Deliveries, stdout)
			}
			if res.Missing != 0 || res.Lost != 0 || res.Reordered != 0 || res.Misrouted != 0 || res.Malformed != 0 || res.PublishErrors != 0 || res.P99ms <= 0 {
				t.Fatalf("not clean: %s", stdout)
			}
			if res.Config.PublishURL != "" && (res.Requests == 0 || res.APIDelivered != res.Deliveries) {
				t.Fatalf("API: %d requests, server says %d delivered, subscribers got %d", res.Requests, res.APIDelivered, res.Deliveries)
			}
			if !strings.Contains(stdout, "\n| smoke | 300 | "+strconv.FormatInt(k, 10)+" | ") {
				t.Fatalf("markdown row %q", stdout)
			}
		})
	}
}

func TestSmoke_ChannelsStub(t *testing.T) {
	wsURL, publishURL := newChannelStub(t)
	runChannelSmoke(t, wsURL, publishURL, os.Getpid())
}

// TestSmoke_ChannelsRealServer builds cmd/fanout, runs it with an API key
// and runs the channel smoke runs against it, over ws and over wss (the
// certificate bench/peers/cert.sh makes, the API over https).
func TestSmoke_ChannelsRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/fanout")
	}
	goTool, err := exec.LookPath("go")
	testutil.NeedTool(t, err == nil, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "fanout")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../fanout").CombinedOutput(); err != nil {
		t.Fatalf("go build ../fanout: %v\n%s", err, out)
	}
	t.Run("ws", func(t *testing.T) {
		a, pid := startFanout(t, bin)
		runChannelSmoke(t, "ws://"+a+"/ws", "http://"+a+"/api/publish", pid)
	})
	t.Run("wss", func(t *testing.T) {
		testutil.NeedTool(t, exec.Command("../../bench/peers/cert.sh", dir).Run() == nil, "openssl (bench/peers/cert.sh)")
		cert := filepath.Join(dir, "cert.pem")
		a, pid := startFanout(t, bin, "-tls-cert", cert, "-tls-key", filepath.Join(dir, "key.pem"), "-handshake-timeout", "1m")
		runChannelSmoke(t, "wss://"+a+"/ws", "https://"+a+"/api/publish", pid, "-ca-file", cert)
	})
}

// startFanout runs cmd/fanout's binary with an API key and args until the
// test ends and returns its address and pid.
func startFanout(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-api-key", stubKey, "-log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() { // the listening address from the start-up log line; then keep draining
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			var line struct{ Addr string }
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line.Addr != "" {
				addr <- line.Addr
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
	}
	if a == "" {
		t.Fatal("cmd/fanout logged no listening address")
	}
	return a, cmd.Process.Pid
}
