// Package natstest runs a real nats-server with JetStream for tests: the
// binary on PATH, on a free loopback port, its store in a temporary
// directory, stopped at cleanup.
package natstest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// Server is one nats-server process; Stop and Start restart it on the same
// port with its JetStream store, which Wipe drops.
type Server struct {
	tb   testing.TB
	Port int
	dir  string
	cmd  *exec.Cmd
}

// Start runs nats-server -js. Without the binary the test is skipped, or
// fails when the CI environment variable is set: CI must install it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	_, err := exec.LookPath("nats-server")
	testutil.NeedTool(tb, err == nil, "nats-server on PATH (apt-get install nats-server)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{tb: tb, Port: ln.Addr().(*net.TCPAddr).Port, dir: tb.TempDir()}
	ln.Close()
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the broker URL of the server.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// Start starts the process again after Stop and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	s.cmd = exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-js", "-sd", s.dir)
	var out bytes.Buffer // why it did not start, for the failure message
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "INFO ") {
				return
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.tb.Fatalf("nats-server on port %d not answering: %v; its output:\n%s", s.Port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the process.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
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
