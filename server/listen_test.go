package server_test

import (
	"net"
	"syscall"
	"testing"

	"github.com/fanout-ws/fanout/server"
	"golang.org/x/sys/unix"
)

// sockopt reads one SOL_SOCKET option of c's socket.
func sockopt(t *testing.T, c syscall.Conn, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// Listen shares its port when asked and accepts sockets without TCP
// keepalive (Go's default would probe every idle connection each 15 s).
func TestListen_ReusePortNoKeepalive(t *testing.T) {
	t.Parallel()
	ln, err := server.Listen("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if v := sockopt(t, ln.(*net.TCPListener), unix.SO_REUSEPORT); v != 1 {
		t.Fatalf("SO_REUSEPORT %d", v)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if v := sockopt(t, sc.(*net.TCPConn), unix.SO_KEEPALIVE); v != 0 {
		t.Fatalf("accepted socket has SO_KEEPALIVE %d", v)
	}
	if v := sockopt(t, c.(*net.TCPConn), unix.SO_KEEPALIVE); v != 1 {
		t.Fatalf("the check cannot fail: Go's default dialer's socket has SO_KEEPALIVE %d", v)
	}
}
