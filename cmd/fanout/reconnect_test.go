//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
)

// jsEvent is one line of testdata/interop/reconnect.mjs.
type jsEvent struct {
	Event   string    `json:"event"`
	Client  int       `json:"client"`
	Attempt int       `json:"attempt"`
	Delay   float64   `json:"delay"`
	Code    int       `json:"code"`
	Reason  string    `json:"reason"`
	After   int       `json:"retryAfter"` // s, of a refused upgrade
	T       float64   `json:"t"`          // ms since the script started
	Offsets [][]int64 `json:"offsets"`
	Gaps    int       `json:"gaps"`
	Refused int       `json:"refused"`
}

// jsClients is a Node process running fanout.js clients (reconnect.mjs).
type jsClients struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	events []jsEvent
	report chan jsEvent
}

// startJSClients runs n fanout.js clients subscribed to channel news at url,
// with the given backoff, and waits until all are subscribed.
func startJSClients(t *testing.T, url string, n int, base, maxDelay time.Duration) *jsClients {
	t.Helper()
	_, err := exec.LookPath("node")
	_, wsErr := os.Stat("testdata/interop/node_modules/ws")
	testutil.NeedTool(t, err == nil && wsErr == nil, "node and `npm ci --prefix cmd/fanout/testdata/interop`")
	j := &jsClients{report: make(chan jsEvent, 1)}
	j.cmd = exec.Command("node", filepath.Join("testdata", "interop", "reconnect.mjs"), url, strconv.Itoa(n), "news",
		strconv.Itoa(int(base.Milliseconds())), strconv.Itoa(int(maxDelay.Milliseconds())))
	j.cmd.Stderr = &lineLogger{t: t}
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := j.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if j.stdin, err = j.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
		_ = j.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var e jsEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if e.Event == "report" {
				j.report <- e
				return
			}
			j.mu.Lock()
			j.events = append(j.events, e)
			j.mu.Unlock()
		}
	}()
	j.waitFor(t, 20*time.Second, func(es []jsEvent) bool { return count(es, "ready") == 1 })
	return j
}

// waitFor waits until the events so far satisfy ok.
func (j *jsClients) waitFor(t *testing.T, timeout time.Duration, ok func([]jsEvent) bool) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		if es := j.snapshot(); !ok(es) {
			return fmt.Errorf("fanout.js clients not there yet; %d events", len(es))
		}
		return nil
	})
}

func (j *jsClients) snapshot() []jsEvent {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]jsEvent(nil), j.events...)
}

// finish asks for offsets 1..n on every client and returns the report.
func (j *jsClients) finish(t *testing.T, n int) jsEvent {
	t.Helper()
	if _, err := fmt.Fprintf(j.stdin, "expect %d\n", n); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-j.report:
		for i, got := range r.Offsets {
			if len(got) != n {
				t.Fatalf("client %d received offsets %v, want 1..%d once each", i, got, n)
			}
			for k, o := range got {
				if o != int64(k+1) {
					t.Fatalf("client %d received offsets %v, want 1..%d once each", i, got, n)
				}
			}
		}
		if r.Gaps != 0 {
			t.Fatalf("%d gap notices", r.Gaps)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("no report from the fanout.js clients; events: %v", j.snapshot())
	}
	return jsEvent{}
}

func count(es []jsEvent, event string) int {
	n := 0
	for _, e := range es {
		if e.Event == event {
			n++
		}
	}
	return n
}

// TestFanoutJS_BackoffSpreadsOut runs fanout.js, unchanged, in Node: its
// clients lose their server to SIGKILL, retry with full-jitter exponential
// backoff (each wait uniform in [0, min(cap, base*2^(attempt-1))], so some
// below half the window, and no two clients in step), come back when it
// restarts on the same port, and resume from Redis history with since=,
// waiting out Retry-After when its -max-handshake-rate refuses them and
// waiting their turn of its -max-replay-rate: every message once, in
// order, none lost.
func TestFanoutJS_BackoffSpreadsOut(t *testing.T) {
	const (
		clients = 40
		base    = 100 * time.Millisecond
		maxWait = 800 * time.Millisecond
	)
	r := redistest.Start(t)
	bin := buildFanout(t)
	args := []string{"-broker", r.URL(), "-api-key", testAPIKey}
	a := startNode(t, bin, args...)
	publisher := startNode(t, bin, args...)
	js := startJSClients(t, "ws://"+a.addr+"/ws", clients, base, maxWait)
	for i := 1; i <= 3; i++ {
		publish(t, publisher, i)
	}
	a.kill()
	for i := 4; i <= 6; i++ {
		publish(t, publisher, i) // missed while A is down
	}
	// Until some client has failed its fourth attempt: the windows grew.
	js.waitFor(t, 20*time.Second, func(es []jsEvent) bool {
		for _, e := range es {
			if e.Event == "reconnecting" && e.Attempt >= 5 {
				return true
			}
		}
		return false
	})
	// Back with a replay bound the resuming clients pass: some wait their
	// turn, and still miss nothing.
	restarted := startNode(t, bin, append(args, "-addr", a.addr, "-max-replay-rate", "10", "-max-handshake-rate", "20")...)
	js.waitFor(t, 20*time.Second, func(es []jsEvent) bool { return count(es, "connected") >= 2*clients })
	for i := 7; i <= 8; i++ {
		publish(t, publisher, i)
	}
	js.finish(t, 8)
	_, page := get("http://" + restarted.admin + "/metrics")
	if paced, _ := strconv.Atoi(metric(page, "fanout_replays_paced_total")); paced == 0 {
		t.Fatal("no resume waited for the replay bound: nothing shows it is honoured")
	}

	byAttempt := map[int][]float64{}
	honoured := 0 // waits that began with a refused upgrade's Retry-After
	for _, e := range js.snapshot() {
		if e.Event != "reconnecting" {
			continue
		}
		window := float64(min(maxWait, base<<(e.Attempt-1)).Milliseconds())
		floor := min(float64(e.After*1000), float64(maxWait.Milliseconds())) // Retry-After first
		if e.After > 0 {
			window = min(window, 1000) // then up to a second, not the growing window
		}
		if e.Delay < floor || e.Delay > floor+window {
			t.Fatalf("client %d attempt %d (Retry-After %d s) waited %v ms, want within [%v, %v]", e.Client, e.Attempt, e.After, e.Delay, floor, floor+window)
		}
		if e.After > 0 {
			honoured++
			continue
		}
		if e.Code != 1006 {
			t.Fatalf("client %d saw close code %d after SIGKILL, want 1006", e.Client, e.Code)
		}
		byAttempt[e.Attempt] = append(byAttempt[e.Attempt], e.Delay)
	}
	first := byAttempt[1]
	if len(first) != clients {
		t.Fatalf("%d first attempts, want %d", len(first), clients)
	}
	window := float64(base.Milliseconds())
	lo, hi, distinct := window, 0.0, map[float64]bool{}
	for _, d := range first {
		lo, hi, distinct[d] = min(lo, d), max(hi, d), true
	}
	// Full jitter: some wait less than half the window (equal jitter never
	// does), the waits span most of it, and few coincide.
	if lo >= window/2 || hi-lo < window/2 || len(distinct) < clients/2 {
		t.Fatalf("first-attempt waits %v: want spread over [0, %v]", first, window)
	}
	if honoured == 0 {
		t.Fatal("no reconnect met -max-handshake-rate: nothing shows Retry-After is honoured")
	}
	t.Logf("waits per attempt (ms): %v; %d after a Retry-After", byAttempt, honoured)
}

// TestFanoutJS_DrainHint: node A drains (SIGTERM) while node B shares its
// port; A's fanout.js clients see 1012 with the hint retry-ms=1000 and wait
// a random delay within it (not within their 5 s base), reach B, and
// resume: every message once, in order.
func TestFanoutJS_DrainHint(t *testing.T) {
	const clients = 40
	r := redistest.Start(t)
	bin := buildFanout(t)
	args := []string{"-broker", r.URL(), "-api-key", testAPIKey, "-reuseport", "-drain-grace", "200ms", "-drain-duration", "1s"}
	a := startNode(t, bin, args...)
	b := startNode(t, bin, append(args, "-addr", a.addr)...)
	js := startJSClients(t, "ws://"+a.addr+"/ws", clients, 5*time.Second, 30*time.Second)
	publish(t, b, 1)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		publish(t, b, i)
	}
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("A after its drain: %v", err)
	}
	var moved int
	js.waitFor(t, 20*time.Second, func(es []jsEvent) bool { // every client that left is back
		moved = 0
		for _, e := range es {
			if e.Event == "reconnecting" && e.Attempt == 1 {
				moved++
			}
		}
		return moved > 0 && count(es, "connected") == clients+moved
	})
	publish(t, b, 5)
	js.finish(t, 5)
	for _, e := range js.snapshot() {
		if e.Event != "reconnecting" || e.Attempt > 1 { // a later attempt follows a failed connect
			continue
		}
		if e.Code != 1012 || e.Reason != "server restart; retry-ms=1000" || e.Delay < 0 || e.Delay > 1000 {
			t.Fatalf("client %d: close %d %q, then waited %v ms; want 1012 with the hint and a wait within [0, 1000]", e.Client, e.Code, e.Reason, e.Delay)
		}
	}
	t.Logf("%d of %d clients moved from A to B", moved, clients)
}
