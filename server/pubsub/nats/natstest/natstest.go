// Package natstest runs a real nats-server with JetStream for tests: the
// binary on PATH, on a free loopback port, its store in a temporary
// directory, stopped at cleanup.
package natstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// Server is one nats-server process; Stop and Start restart it on the same
// port with its JetStream store, which Wipe drops.
type Server struct {
	tb     testing.TB
	Port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
	out    []*startLog   // each start's output, for a failed test's log
}

// Start runs nats-server -js on a port it picks itself (so no other test
// can take it between a probe and the bind). Without the binary the test
// is skipped, or fails when the CI environment variable is set: CI must
// install it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	_, err := exec.LookPath("nats-server")
	testutil.NeedTool(tb, err == nil, "nats-server on PATH (apt-get install nats-server)")
	s := &Server{tb: tb, dir: tb.TempDir()}
	s.Start()
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			for i, l := range s.out {
				tb.Logf("nats-server on port %d, start %d, said:\n%s", s.Port, i+1, l.String())
			}
		}
	})
	return s
}

// URL is the broker URL of the server.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// Start starts the process (again, after Stop, on the same port) and
// waits until it says it is ready: its own word, since an answer on the
// port could come from another server there.
func (s *Server) Start() {
	s.tb.Helper()
	port := "-1" // the first time: any free port
	if s.Port != 0 {
		port = strconv.Itoa(s.Port)
	}
	s.cmd = exec.Command("nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", s.dir)
	log := &startLog{ready: make(chan int, 1)}
	s.out = append(s.out, log)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(s.cmd, s.exited)
	select {
	case p := <-log.ready:
		s.Port = p
	case <-s.exited:
		s.cmd = nil
		s.tb.Fatalf("nats-server exited at start; its output:\n%s", log.String())
	case <-time.After(10 * time.Second):
		s.Stop()
		s.tb.Fatalf("nats-server not ready after 10 s; its output:\n%s", log.String())
	}
}

// startLog is nats-server's output: it reports the client port once the
// server says it is ready, and keeps the text for failure messages.
type startLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	read  int // bytes of buf looked at, up to the last whole line
	port  int
	ready chan int // gets the port once
	told  bool
}

func (l *startLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for !l.told {
		line, _, ok := strings.Cut(l.buf.String()[l.read:], "\n")
		if !ok {
			break
		}
		l.read += len(line) + 1
		if _, addr, ok := strings.Cut(line, "Listening for client connections on "); ok {
			_, port, _ := strings.Cut(addr, ":")
			l.port, _ = strconv.Atoi(port)
		}
		if strings.HasSuffix(line, "Server is ready") && l.port != 0 {
			l.ready <- l.port
			l.told = true
		}
	}
	return len(p), nil
}

func (l *startLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Stop kills the process.
func (s *Server) Stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
	}
}

// Wipe drops the JetStream store; call it between Stop and Start.
func (s *Server) Wipe() {
	if err := os.RemoveAll(s.dir); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		s.tb.Fatal(err)
	}
}
