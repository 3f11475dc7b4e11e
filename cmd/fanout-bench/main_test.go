package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/bench"
	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
)

// TestMain lets this test binary serve as the generator's worker process.
func TestMain(m *testing.M) {
	if bench.IsWorker() {
		if err := bench.RunWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// chatServer runs /ws (a broadcast room) and /echo in-process on
// 127.0.0.1:0 and returns its base URL.
func chatServer(t *testing.T) string { return chatServerTLS(t, nil) }

// chatServerTLS is chatServer speaking wss when tc is set.
func chatServerTLS(t *testing.T, tc *tls.Config) string {
	t.Helper()
	var hub *server.Hub
	srv, err := server.New(server.Config{
		TLS:              tc,
		HandshakeTimeout: time.Minute, // the race detector on a busy machine stretches TLS handshakes past the default
		OnConnect: func(c *server.Conn, r *server.Request) error {
			if r.Path() == "/ws" {
				c.SetData(hub)
				return hub.Join(c)
			}
			return nil
		},
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) {
			if c.Data() == hub {
				hub.Broadcast(op, data)
				return
			}
			_ = c.Send(op, data)
		},
		SendQueueBytes: 256 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	hub = srv.NewHub()
	addr := serve(t, srv)
	if tc != nil {
		return "wss://" + addr
	}
	return "ws://" + addr
}

// serve runs srv on 127.0.0.1:0 until the test ends and returns its address.
func serve(t *testing.T, srv *server.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	<-srv.Ready()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// testTLS is a server TLS config with a fresh self-signed ECDSA P-256
// certificate for 127.0.0.1, and the PEM file that trusts it.
func testTLS(t *testing.T) (*tls.Config, string) {
	cert, _ := testutil.Cert(t, "fanout-bench test")
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	testutil.WriteCert(t, cert, ca, filepath.Join(dir, "key.pem"))
	return &tls.Config{Certificates: []tls.Certificate{cert}}, ca
}

// Every scenario works over wss, with -ca-file or -insecure.
func TestSmoke_WSS(t *testing.T) {
	tc, ca := testTLS(t)
	base := chatServerTLS(t, tc)
	checkScenarios(t, base, 100, "-ca-file", ca)
	t.Run("insecure", func(t *testing.T) {
		res, _ := runJSON(t, "-url", base+"/ws", "-conns", "50", "-insecure", "-duration", "1s", "-settle", "0s", "-drain", "1s", "-msg-rate", "20")
		if res.Connected != 50 || res.Sent == 0 || res.Deliveries != res.Sent*50 {
			t.Fatalf("broadcast with -insecure: %+v", res)
		}
	})
	if err := run(context.Background(), []string{"-url", base + "/ws", "-scenario", "idle", "-conns", "5", "-duration", "1s"}, &bytes.Buffer{}, io.Discard); err == nil {
		t.Fatal("a certificate no CA vouches for should fail every dial")
	}
}

func TestSmoke_Scenarios(t *testing.T) { checkScenarios(t, chatServer(t), 300) }

// checkScenarios runs every scenario with n connections against the chat
// server at base (ws:// or wss://), with extra flags.
func checkScenarios(t *testing.T, base string, n int, flags ...string) {
	pid, conns := strconv.Itoa(os.Getpid()), strconv.Itoa(n)
	for _, tc := range []struct {
		scenario, path string
		extra          []string
	}{
		{"idle", "/ws", nil},
		{"broadcast", "/ws", nil},
		{"broadcast", "/ws", []string{"-per-process", strconv.Itoa((n + 2) / 3)}},        // three worker processes
		{"broadcast", "/ws", []string{"-publishers", "3", "-source-addrs", "127.0.0.1"}}, // order checked per publisher
		{"broadcast", "/ws", []string{"-churners", "10"}},                                // a reconnect storm beside the subscribers
		{"echo", "/echo", []string{"-msg-rate", "500"}},
		{"churn", "/echo", []string{"-conns", "20"}},
		{"slow", "/ws", []string{"-slow-frac", "0.05", "-stalled", "40"}},
	} {
		t.Run(tc.scenario+strings.Join(tc.extra, ""), func(t *testing.T) {
			res, stdout := runJSON(t, append([]string{
				"-url", base + tc.path, "-scenario", tc.scenario, "-conns", conns, "-rate", "3000",
				"-duration", "1s", "-settle", "100ms", "-drain", "1500ms", "-msg-rate", "50",
				"-server-pid", pid, "-label", "smoke",
			}, append(tc.extra, flags...)...)...)
			if res.DialErrors != 0 || (res.Connected == 0 && tc.scenario != "churn") {
				t.Fatalf("connected %d, dial errors %d", res.Connected, res.DialErrors)
			}
			switch tc.scenario {
			case "idle":
				if res.Connected != n || res.ServerRSS == 0 {
					t.Fatalf("idle result %+v", res)
				}
			case "broadcast":
				if res.Connected != n || res.Sent == 0 || res.Missing != 0 || res.Lost != 0 || res.Reordered != 0 || res.P99ms <= 0 {
					t.Fatalf("broadcast result %+v", res)
				}
				if res.Deliveries != res.Sent*int64(n) || res.Sent < 40 {
					t.Fatalf("%d deliveries for %d messages to %d subscribers", res.Deliveries, res.Sent, n)
				}
				if churn := slices.Contains(tc.extra, "-churners"); churn != (res.Storm != nil) ||
					churn && (res.Storm.Handshakes < 10 || res.Storm.Failed != 0 || res.Storm.P99ms <= 0) {
					t.Fatalf("storm %+v", res.Storm)
				}
			case "echo":
				if res.Sent < 400 || res.Missing != 0 || res.P99ms <= 0 {
					t.Fatalf("echo result %+v", res)
				}
			case "churn":
				if res.Sent == 0 || res.Failed != 0 || res.DeliveriesPS <= 0 {
					t.Fatalf("churn result %+v", res)
				}
			case "slow":
				if res.Clean == nil || res.Clean.Missing != 0 || res.Lost != 0 || res.P99ms <= 0 {
					t.Fatalf("slow result %+v", res)
				}
			}
			header, rest, _ := strings.Cut(stdout, "\n")
			if !strings.HasPrefix(header, "| server | ") || !strings.Contains(rest, "\n| smoke |") {
				t.Fatalf("table without its header or row: %q", stdout)
			}
		})
	}
}

func TestHelp_DocumentsEveryFlag(t *testing.T) {
	var errOut bytes.Buffer
	_ = run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &errOut)
	for _, f := range []string{"-publishers", "-source-addrs", "-vs-label", "-url", "-scenario", "-conns", "-rate", "-source-ips", "-duration", "-msg-rate", "-size", "-server-pid", "-broker-pid", "-json", "-server-cmd", "-vs-cmd", "-rounds", "-per-process", "-slow-frac", "-stalled", "-timeout", "-channels", "-channel-prefix", "-publish-url", "-api-key", "-batch", "-pin-server", "-pin-client", "-ceiling", "-ceiling-p99", "-metrics-url", "-quiet", "-churners", "-server-log", "-closed-loop", "-header"} {
		if !strings.Contains(errOut.String(), f+" ") && !strings.Contains(errOut.String(), f+"\n") {
			t.Errorf("-h does not document %s", f)
		}
	}
}

// runJSON runs the generator with args and returns the result it wrote
// with -json, and what it printed.
func runJSON(t *testing.T, args ...string) (bench.Result, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.json")
	var stdout bytes.Buffer
	if err := run(context.Background(), append(args, "-json", out), &stdout, os.Stderr); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	var doc document
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Result == nil {
		t.Fatalf("no result in %s", b)
	}
	return *doc.Result, stdout.String()
}

// TestRamp_RateIsTheWholeRun: -rate paces the whole ramp, not each worker
// process: 600 connections at 600/s over three workers take about a second
// (each worker at the full rate took a third of it). Only a lower bound:
// a slow machine can make the ramp longer, never shorter.
func TestRamp_RateIsTheWholeRun(t *testing.T) {
	res, _ := runJSON(t, "-url", chatServer(t)+"/ws", "-scenario", "idle", "-conns", "600", "-rate", "600",
		"-per-process", "200", "-duration", "100ms", "-settle", "0s", "-label", "ramp")
	if res.Connected != 600 || res.Processes != 3 {
		t.Fatalf("connected %d over %d processes", res.Connected, res.Processes)
	}
	if res.RampS < 0.8 {
		t.Fatalf("ramp took %.2f s: 600 connections at 600/s take about 1 s", res.RampS)
	}
}

// TestTimeout_SaysSoWhenItKillsWorkers: a run whose ramp outlasts -timeout
// stops there, and its error names the timeout, not the EOF of the worker
// processes it killed (a 1M run once ended in "worker N: EOF").
func TestTimeout_SaysSoWhenItKillsWorkers(t *testing.T) {
	start := time.Now()
	err := run(context.Background(), []string{"-url", chatServer(t) + "/ws", "-scenario", "idle", "-conns", "400",
		"-rate", "100", "-per-process", "200", "-duration", "100ms", "-settle", "0s", "-timeout", "1s", "-quiet"},
		&bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-timeout (1s) passed") {
		t.Fatalf("a 4 s ramp under -timeout 1s: %v, want the timeout named", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("stopped after %v", d)
	}
}

// TestHeader_OnEveryUpgrade: -header lines reach the server on every
// upgrade, workers' included (a connect hook's session cookie), and the
// JSON, which holds the command line, does not carry them.
func TestHeader_OnEveryUpgrade(t *testing.T) {
	const cookie = "session=s3cret"
	var withCookie atomic.Int64
	srv, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, r *server.Request) error {
			if r.Header.Get("Cookie") != cookie || r.Header.Get("X-Tenant") != "blue" {
				return server.Reject(http.StatusUnauthorized, "no session")
			}
			withCookie.Add(1)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + serve(t, srv) + "/ws"
	out := filepath.Join(t.TempDir(), "r.json")
	args := []string{"-url", url, "-scenario", "idle", "-conns", "300", "-per-process", "100", "-duration", "100ms",
		"-settle", "0s", "-quiet", "-header", "Cookie: " + cookie, "-header", "X-Tenant: blue"}
	if err := run(context.Background(), append(args, "-json", out), &bytes.Buffer{}, os.Stderr); err != nil {
		t.Fatal(err)
	}
	if n := withCookie.Load(); n != 300 {
		t.Fatalf("%d upgrades carried the headers, want 300 (three processes)", n)
	}
	if b, _ := os.ReadFile(out); bytes.Contains(b, []byte("s3cret")) {
		t.Fatalf("the JSON holds the cookie: %s", b)
	}
	if err := run(context.Background(), []string{"-url", url, "-header", "Cookie"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("-header without a colon was accepted")
	}
}
