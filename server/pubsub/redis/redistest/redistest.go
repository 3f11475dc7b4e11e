// Package redistest runs a real redis-server for tests: the binary on PATH,
// on a free loopback port, stopped at cleanup; without persistence unless
// started with StartPersistent.
package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/procstat"
	"github.com/fanout-ws/fanout/internal/testutil"
)

// Server is one redis-server process; Stop and Start restart it on the
// same port (losing its data).
type Server struct {
	tb      testing.TB
	Port    int
	busPort int    // the cluster bus's, for a cluster node
	dir     string // append-only file directory, when persistent
	cmd     *exec.Cmd
}

// Start runs redis-server. Without the binary the test is skipped, or
// fails when the CI environment variable is set: CI must install it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, "")
}

// StartPersistent runs redis-server with an append-only file (fsync
// always), so a restart keeps its data.
func StartPersistent(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, tb.TempDir())
}

func start(tb testing.TB, dir string) *Server {
	tb.Helper()
	s := newServer(tb, dir)
	s.Start()
	return s
}

// newServer is a Server on a free port, not started yet, stopped at cleanup.
func newServer(tb testing.TB, dir string) *Server {
	tb.Helper()
	_, err := exec.LookPath("redis-server")
	testutil.NeedTool(tb, err == nil, "redis-server on PATH (apt-get install redis-server)")
	s := &Server{tb: tb, Port: freePort(tb), dir: dir}
	tb.Cleanup(s.Stop)
	return s
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// URL is the broker URL of the server's database 0.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Addr is host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Start starts the process again after Stop and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--loglevel", "warning"}
	if s.dir != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.busPort != 0 {
		args = append(args, clusterArgs(s.busPort)...)
	}
	s.cmd = exec.Command("redis-server", args...)
	var out bytes.Buffer // why it did not start, for the failure message
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a loaded machine replays the append-only file slowly
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.tb.Fatalf("redis-server on port %d not answering: %v; its output:\n%s", s.Port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wipe deletes a stopped persistent server's data: its next Start is an
// empty Redis, as a restart without persistence would be.
func (s *Server) Wipe() {
	s.tb.Helper()
	if s.dir == "" {
		return
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.tb.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == clusterConfig { // a cluster node keeps its place in the cluster
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.tb.Fatal(err)
		}
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

// CPU is the CPU time (user and system) redis-server has used since it
// started, so that a benchmark can report what Redis spends per operation;
// 0 when /proc cannot say.
func (s *Server) CPU() time.Duration {
	ticks, _ := procstat.CPUTicks(s.cmd.Process.Pid)
	return time.Duration(ticks) * time.Second / procstat.TicksPerSecond
}
