package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/gorilla/websocket"
)

var listening = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// startPeer runs argv until the test ends and returns the address it
// says it listens on.
func startPeer(t *testing.T, argv ...string) (addr string, pid int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); r.Close() })
	found := make(chan string, 1)
	go func() { // the address line, then keep draining
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case addr = <-found:
	case <-time.After(30 * time.Second):
	}
	if addr == "" {
		t.Fatalf("%v named no listening address", argv)
	}
	return addr, cmd.Process.Pid
}

// Every peer keeps the contract the benchmarks rely on: /ws sends each
// message to every client, the sender included, in order and without
// loss, and /echo echoes; uWS.js does so over wss too (SSLApp), with the
// certificate bench/peers/cert.sh makes for every server of a wss run.
func TestPeers_Contract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the peers")
	}
	goTool, err := exec.LookPath("go")
	testutil.NeedTool(t, err == nil, "go")
	_, nodeErr := exec.LookPath("node")
	dir, peers := t.TempDir(), "../../bench/peers"
	certErr := exec.Command(filepath.Join(peers, "cert.sh"), dir).Run()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, p := range []string{"gorilla", "nbio"} { // bench/peers is a module of its own
		if out, err := exec.Command(goTool, "build", "-C", peers, "-o", filepath.Join(dir, p), "./"+p).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", p, err, out)
		}
	}
	for _, tc := range []struct {
		name   string
		argv   []string
		module string // a Node peer's package, installed by make deps
	}{
		{"gorilla", []string{filepath.Join(dir, "gorilla"), "-addr", "127.0.0.1:0"}, ""},
		{"nbio", []string{filepath.Join(dir, "nbio"), "-addr", "127.0.0.1:0"}, ""},
		{"node-ws", []string{"node", filepath.Join(peers, "node", "server.js"), "0"}, filepath.Join(peers, "node", "node_modules", "ws")},
		{"uws", []string{"node", filepath.Join(peers, "uws", "server.js"), "0"}, filepath.Join(peers, "uws", "node_modules", "uwebsockets")},
		{"uws-tls", []string{"node", filepath.Join(peers, "uws", "server.js"), "0", "--cert", cert, "--key", key}, filepath.Join(peers, "uws", "node_modules", "uwebsockets")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.module != "" {
				_, modErr := os.Stat(tc.module)
				testutil.NeedTool(t, nodeErr == nil && modErr == nil, "node and make deps ("+tc.module+")")
			}
			scheme, trust := "ws", []string{}
			if strings.HasSuffix(tc.name, "-tls") {
				testutil.NeedTool(t, certErr == nil, "openssl (bench/peers/cert.sh)")
				scheme, trust = "wss", []string{"-ca-file", cert}
			}
			addr, pid := startPeer(t, tc.argv...)
			checkSenderGetsItsOwn(t, scheme+"://"+addr+"/ws", cert)
			res, _ := runJSON(t, append([]string{"-url", scheme + "://" + addr + "/ws", "-conns", "200", "-publishers", "2", "-msg-rate", "20",
				"-duration", "1s", "-settle", "0s", "-drain", "1s", "-server-pid", strconv.Itoa(pid), "-quiet"}, trust...)...)
			if res.Connected != 200 || res.Sent < 30 || res.Missing != 0 || res.Lost != 0 || res.Reordered != 0 || res.Deliveries != res.Sent*200 {
				t.Fatalf("room: %d connected, %d sent, %d delivered, %d missing, %d lost, %d reordered",
					res.Connected, res.Sent, res.Deliveries, res.Missing, res.Lost, res.Reordered)
			}
			echo, _ := runJSON(t, append([]string{"-url", scheme + "://" + addr + "/echo", "-scenario", "echo", "-closed-loop", "-conns", "10",
				"-duration", "1s", "-settle", "0s", "-drain", "1s", "-quiet"}, trust...)...)
			if echo.Sent < 100 || echo.Missing != 0 {
				t.Fatalf("echo: %d sent, %d missing", echo.Sent, echo.Missing)
			}
		})
	}
}

// checkSenderGetsItsOwn sends one message on the room and reads it back
// (over wss, trusting the PEM certificate in cert).
func checkSenderGetsItsOwn(t *testing.T, url, cert string) {
	t.Helper()
	d := *websocket.DefaultDialer
	if strings.HasPrefix(url, "wss:") {
		b, err := os.ReadFile(cert)
		if err != nil {
			t.Fatal(err)
		}
		d.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool()}
		d.TLSClientConfig.RootCAs.AppendCertsFromPEM(b)
	}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("own")); err != nil {
		t.Fatal(err)
	}
	op, got, err := c.ReadMessage()
	if err != nil || op != websocket.BinaryMessage || string(got) != "own" {
		t.Fatalf("the sender got %d %q %v back, want its own binary message", op, got, err)
	}
}
