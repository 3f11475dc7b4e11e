// Package rabbittest runs a real rabbitmq-server for tests: Debian's
// package, with the rabbitmq_stream plugin, its own data directory, node
// name and loopback ports (stream, Erlang distribution, epmd), so that
// tests of several packages and engineers can run side by side. Start is
// slow (seconds): start one per test package, in TestMain.
package rabbittest

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Bin is the server script of Debian's rabbitmq-server package.
const Bin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// ErrMissing is returned by Start when rabbitmq-server is not installed.
var ErrMissing = errors.New("rabbittest: rabbitmq-server not installed (apt-get install rabbitmq-server)")

// Server is one rabbitmq-server node; Stop and Start restart it on the same
// ports, keeping its data unless Wipe ran in between.
type Server struct {
	dir                  string
	StreamPort, distPort int
	epmdPort             int
	cmd                  *exec.Cmd
	exited               chan struct{} // closed when cmd has exited
}

// Start runs a new node in a fresh directory under dir and waits until its
// stream port answers.
func Start(dir string) (*Server, error) {
	if _, err := os.Stat(Bin); err != nil {
		return nil, ErrMissing
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, StreamPort: ports[0], distPort: ports[1], epmdPort: ports[2]}
	conf := fmt.Sprintf("listeners.tcp = none\nstream.listeners.tcp.1 = 127.0.0.1:%d\n"+
		"stream.advertised_host = 127.0.0.1\nstream.advertised_port = %d\nloopback_users = none\n", s.StreamPort, s.StreamPort)
	for name, data := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[rabbitmq_stream].\n", "env.conf": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	// An epmd of our own, on its own port, that Close stops.
	epmd := exec.Command("epmd", "-port", strconv.Itoa(s.epmdPort), "-address", "127.0.0.1", "-daemon")
	if out, err := epmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("rabbittest: epmd: %v: %s", err, out)
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// URL is the broker URL of stream on this node.
func (s *Server) URL(stream string) string {
	return fmt.Sprintf("rabbitmq-stream://guest:guest@127.0.0.1:%d/?stream=%s", s.StreamPort, stream)
}

// Start starts the node again after Stop and waits until it answers.
func (s *Server) Start() error {
	log, err := os.Create(filepath.Join(s.dir, "server.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(Bin)
	cmd.Env = append(os.Environ(),
		"HOME="+s.dir, // the Erlang cookie
		"RABBITMQ_NODENAME=fanout-test-"+strconv.Itoa(s.StreamPort)+"@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_DIST_PORT="+strconv.Itoa(s.distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(s.epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(s.dir, "data"),
		"RABBITMQ_LOG_BASE="+filepath.Join(s.dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_CONFIG_FILE="+filepath.Join(s.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(s.dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(s.dir, "env.conf"),
		"RABBITMQ_PID_FILE="+filepath.Join(s.dir, "pid"),
	)
	cmd.Dir = s.dir // where a crash dump goes
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Stop kills erl's children too
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.After(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.StreamPort), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("rabbittest: rabbitmq-server exited (%v); see %s", cmd.ProcessState, log.Name())
		case <-deadline:
			s.Stop()
			return fmt.Errorf("rabbittest: rabbitmq-server not listening on %d after 60 s; see %s", s.StreamPort, log.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the node as systemd would (SIGTERM, then SIGKILL after 30 s)
// and waits until its port is free.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	for range 200 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.StreamPort))
		if err == nil {
			ln.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Wipe deletes a stopped node's data: its next Start is a new broker.
func (s *Server) Wipe() error { return os.RemoveAll(filepath.Join(s.dir, "data")) }

// Close stops the node and the epmd it started.
func (s *Server) Close() {
	s.Stop()
	_ = exec.Command("epmd", "-port", strconv.Itoa(s.epmdPort), "-kill").Run()
}

// freePorts returns n ports that are free now, below the kernel's
// ephemeral range (32768 and up on Linux): the node binds some of them
// seconds later, and on a machine busy with load tests an outgoing
// connection can take an ephemeral port in between.
func freePorts(n int) ([]int, error) {
	var ports []int
	for try := 0; len(ports) < n; try++ {
		if try == 1000 {
			return nil, errors.New("rabbittest: no free port in 20000-32767")
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12768)))
		if err != nil {
			continue
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
