//go:build linux

package bench

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/fanout-ws/fanout/poller"
	"golang.org/x/sys/unix"
)

// sock is the transport under a wss connection's crypto/tls client: Go's
// net.Conn during the TLS and WebSocket handshakes (blocking, deadlines),
// then, once detached, the raw non-blocking fd that the group's poller
// watches. So a subscriber over wss costs what crypto/tls keeps and no
// goroutine, like a plain one.
//
// Detached, a read that would block returns errWouldBlock: crypto/tls does
// not make a Temporary net.Error sticky and keeps a partial record for the
// next Read, so tls.Conn.Read becomes non-blocking and resumable. A write
// waits for the socket (up to sockWriteWait) rather than cut a record.
type sock struct {
	net.Conn      // until detach
	fd       int  // after detach
	drained  bool // a read this pass came back short: the socket was empty then
}

// sockWriteWait bounds how long a detached write waits for a full socket.
const sockWriteWait = 5 * time.Second

// errWouldBlock is a detached sock's EAGAIN.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "bench: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (s *sock) Read(p []byte) (int, error) {
	if s.Conn != nil {
		return s.Conn.Read(p)
	}
	if s.drained { // what came since raises an event once the reader re-arms
		return 0, errWouldBlock
	}
	for {
		n, err := unix.Read(s.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		s.drained = n < len(p)
		return n, nil
	}
}

func (s *sock) Write(p []byte) (int, error) {
	if s.Conn != nil {
		return s.Conn.Write(p)
	}
	deadline := time.Now().Add(sockWriteWait)
	done := 0
	for done < len(p) {
		n, err := unix.Write(s.fd, p[done:])
		done += max(n, 0)
		switch {
		case err == nil || err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return done, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return done, os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(fds, int(wait/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return done, err
		}
	}
	return done, nil
}

// Close closes the net.Conn; once detached, the fd's owner closes the fd.
func (s *sock) Close() error {
	if s.Conn != nil {
		return s.Conn.Close()
	}
	return nil
}

// detach takes nc's socket from Go's netpoller (see poller.Detach) and
// returns its fd: nc itself for ws, or the sock under nc's crypto/tls for
// wss, which keeps working over the fd.
func detach(nc net.Conn) (int, error) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return poller.Detach(nc)
	}
	s, ok := tc.NetConn().(*sock)
	if !ok {
		nc.Close()
		return -1, errors.New("bench: a TLS connection not over a sock")
	}
	fd, err := poller.Detach(s.Conn)
	s.Conn, s.fd = nil, fd
	return fd, err
}
