//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/gorilla/websocket"
)

// drainClose is the close one client of a draining node saw.
type drainClose struct {
	at         time.Time
	code       int
	text, from string
}

// watchClose reads c until it ends and reports how.
func watchClose(c *websocket.Conn, closes chan<- drainClose) {
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			d := drainClose{at: time.Now(), from: c.LocalAddr().String()}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				d.code, d.text = ce.Code, ce.Text
			}
			closes <- d
			return
		}
	}
}

// TestDrain_ReusePortHandover drains node A with SIGTERM while node B
// shares its port (-reuseport) and clients keep connecting: A's /readyz
// answers 503 before anything else happens, A keeps accepting through
// -drain-grace, then its clients get 1012 with the reconnect hint, spread
// over -drain-duration, and not one of the new connections is refused:
// B takes them. Closing a listener of a SO_REUSEPORT group resets the
// connections in its accept queue unless net.ipv4.tcp_migrate_req is 1
// (README, Operations); the test runs in a network namespace of its own
// where it is.
func TestDrain_ReusePortHandover(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	bin := buildFanout(t)
	a := startNode(t, bin, "-reuseport", "-drain-grace", "1s", "-drain-duration", "2s")
	b := startNode(t, bin, "-reuseport", "-addr", a.addr)
	url := "ws://" + a.addr + "/ws"

	const clients = 40
	closes := make(chan drainClose, 1000)
	var conns []*websocket.Conn
	for i := range clients {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i%20), url, nil)
		conns = append(conns, c)
		go watchClose(c, closes)
	}
	var onA []string
	for _, c := range conns {
		if whoSaw(t, []*node{a, b}, c.LocalAddr().String()) == a {
			onA = append(onA, c.LocalAddr().String())
		}
	}
	if len(onA) == 0 || len(onA) == clients {
		t.Fatalf("%d of %d clients on A: the port is not shared", len(onA), clients)
	}

	// New clients keep coming, 100 a second, across the whole drain.
	var dialed, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c, _, err := dialer(fmt.Sprintf("127.0.0.%d", 40+i%50)).Dial(url, nil)
			dialed.Add(1)
			if err != nil {
				refused.Add(1)
				t.Logf("dial during the drain: %v", err)
				continue
			}
			t.Cleanup(func() { c.Close() })
			go watchClose(c, closes)
		}
	}()

	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var notReady time.Duration
	for notReady == 0 {
		if code, _ := get("http://" + a.admin + "/readyz"); code == http.StatusServiceUnavailable {
			notReady = time.Since(start)
		} else if time.Since(start) > 5*time.Second {
			t.Fatalf("A's /readyz still %d 5 s after SIGTERM", code)
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- a.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("A exited with %v after its drain", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("A still runs 20 s after SIGTERM")
	}
	close(stop)
	wg.Wait()
	if n := refused.Load(); n != 0 {
		t.Fatalf("%d of %d connections refused during A's drain", n, dialed.Load())
	}

	var fromA []drainClose
	testutil.Eventually(t, 5*time.Second, func() error {
		for len(closes) > 0 {
			fromA = append(fromA, <-closes)
		}
		for _, addr := range onA {
			if !slices.ContainsFunc(fromA, func(d drainClose) bool { return d.from == addr }) {
				return fmt.Errorf("client %s of A saw no close", addr)
			}
		}
		return nil
	})
	for _, d := range fromA {
		if d.code != 1012 || d.text != "server restart; retry-ms=1000" {
			t.Fatalf("client %s of A saw close %d %q, want 1012 with the reconnect hint", d.from, d.code, d.text)
		}
	}
	slices.SortFunc(fromA, func(x, y drainClose) int { return x.at.Compare(y.at) })
	first, last := fromA[0].at.Sub(start), fromA[len(fromA)-1].at.Sub(start)
	t.Logf("/readyz 503 after %v; %d closes from %v to %v; %d connections dialed during the drain, none refused",
		notReady, len(fromA), first, last, dialed.Load())
	if first < time.Second || notReady >= first {
		t.Fatalf("first close %v after SIGTERM, /readyz 503 after %v: want readiness first, closes after the 1 s grace", first, notReady)
	}
	if last-first < time.Second {
		t.Fatalf("closes from %v to %v: not spread over the 2 s drain", first, last)
	}
	// B still serves them all.
	c := dialFrom(t, "127.0.0.99", url, nil)
	if whoSaw(t, []*node{a, b}, c.LocalAddr().String()) != b {
		t.Fatal("a new client reached A after its exit")
	}
}

// inOwnNetns runs the calling test again in a network namespace of its own
// (unshare -n, as root) with loopback up and net.ipv4.tcp_migrate_req=1,
// and reports its result; the caller goes on only inside it, where
// inOwnNetns returns true.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("FANOUT_TEST_NETNS") == "1" {
		return true
	}
	_, err := exec.LookPath("unshare")
	_, ipErr := exec.LookPath("ip")
	testutil.NeedTool(t, err == nil && ipErr == nil && os.Geteuid() == 0, "root, unshare and ip (util-linux, iproute2) for a network namespace")
	script := `ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && exec "$0" "$@"`
	cmd := exec.Command("unshare", "--net", "--", "/bin/sh", "-c", script, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FANOUT_TEST_NETNS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return false
}

// POST /admin/drain drains as SIGTERM does: /readyz answers 503 at once,
// the clients get 1012 with the hint, and run returns once they are gone.
func TestAdmin_DrainRequest(t *testing.T) {
	addrs, done := startRun(t, context.Background(), "-admin-addr", "127.0.0.1:0", "-drain-grace", "1s", "-drain-duration", "200ms")
	c := dialWS(t, "ws://"+addrs.addr+"/echo")
	base := "http://" + addrs.admin
	if code, _ := get(base + "/admin/drain"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /admin/drain: %d, want 405", code)
	}
	resp, err := http.Post(base+"/admin/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /admin/drain: %d, want 202", resp.StatusCode)
	}
	testutil.Eventually(t, 500*time.Millisecond, func() error { // well within the grace
		if code, _ := get(base + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d after POST /admin/drain, want 503", code)
		}
		return nil
	})
	closes := make(chan drainClose, 1)
	watchClose(c, closes)
	if d := <-closes; d.code != 1012 || d.text != "server restart; retry-ms=1000" {
		t.Fatalf("close %d %q, want 1012 with the hint", d.code, d.text)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run still serving 10 s after the drain request")
	}
}

// A second SIGTERM during the drain's grace closes everyone at once with
// 1001, as before paced drains, and the process exits.
func TestDrain_SecondSignalClosesAtOnce(t *testing.T) {
	n := startNode(t, buildFanout(t), "-drain-grace", "1m", "-drain-duration", "1m")
	c := dialFrom(t, "127.0.0.50", "ws://"+n.addr+"/echo", nil)
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if code, _ := get("http://" + n.admin + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d during the drain", code)
		}
		return nil
	})
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	closes := make(chan drainClose, 1)
	watchClose(c, closes)
	if d := <-closes; d.code != 1001 {
		t.Fatalf("close %d %q after the second SIGTERM, want 1001", d.code, d.text)
	}
	exited := make(chan error, 1)
	go func() { exited <- n.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after the second SIGTERM")
	}
}
