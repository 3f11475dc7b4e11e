// Package testutil holds what the tests of several packages share: waiting
// for a condition, the channel protocol's events, and checking that a
// package's tests leave no goroutine or file descriptor behind. It imports
// the standard library only, so that test harnesses outside _test.go files
// (pubsubtest) pull no test client into the module's packages; the
// gorilla/websocket helpers are in internal/wstest.
package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Eventually retries f until it returns nil, failing tb with f's last error
// once timeout has passed. Tests wait with it instead of sleeping.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Event is any server message of the channel protocol (JSON keys match
// the field names case-insensitively).
type Event struct {
	Type, Op, Channel, Epoch, Reason string
	Offset                           uint64
	Since, First                     *uint64
	Delivered                        *int
	ID, Data                         json.RawMessage
	Member                           *Member  // join, leave
	Members                          []Member // presence
	Truncated                        bool     // presence
	Clients, Users                   *int     // presence_stats
}

// Member is a member of a presence channel, as events carry it.
type Member struct {
	Client, User string
	Info         json.RawMessage
}

// NeedTool returns if ok; otherwise it skips tb, naming the missing tool
// and how to install it, except in CI (CI set), which must have installed
// every tool the tests use (make deps), so there it fails.
func NeedTool(tb testing.TB, ok bool, hint string) {
	tb.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("missing in CI: %s", hint)
	}
	tb.Skipf("missing: %s", hint)
}

// SyncBuffer collects what several goroutines write (a server's logs, a
// child process's output) for a test to read.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Main runs a package's tests from TestMain and fails them if they leave
// goroutines or file descriptors behind once everything has shut down.
func Main(m *testing.M) {
	fds := countFDs()
	goroutines := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), countFDs()
			if g <= goroutines+2 && f <= fds {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "leak: %d goroutines (%d at start), %d fds (%d at start)\n", g, goroutines, f, fds)
				buf := make([]byte, 1<<20)
				os.Stderr.Write(buf[:runtime.Stack(buf, true)])
				code = 1
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Exit(code)
}

func countFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}
