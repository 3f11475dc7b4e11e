//go:build linux

package server

import (
	"net"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	sockClosing = 1 << 62 // close requested: no new references
	sockClosed  = 1 << 63 // the number has been closed
	iovMax      = 1024    // IOV_MAX on Linux
)

// sock owns a raw non-blocking socket fd. Every syscall on it holds a
// reference, and the number is closed only when close was requested and the
// last reference is gone, so no syscall ever lands on a number the kernel has
// handed to a newer socket.
type sock struct {
	state atomic.Uint64 // references | sockClosing | sockClosed
	fd    int32
	tls   *tlsIO // non-nil for TLS: I/O goes through crypto/tls, and Go owns the fd
}

// closeFD closes the socket for good.
func (s *sock) closeFD() {
	if s.tls != nil {
		if !s.tls.raw.detached.Load() {
			_ = s.tls.raw.Conn.Close()
		}
		return
	}
	_ = unix.Close(int(s.fd))
}

func (s *sock) acquire() bool {
	if s.state.Add(1)&sockClosing != 0 {
		s.release()
		return false
	}
	return true
}

func (s *sock) release() {
	if s.state.Add(^uint64(0)) == sockClosing && s.state.CompareAndSwap(sockClosing, sockClosing|sockClosed) {
		s.closeFD()
	}
}

// close requests the close; the fd is closed now or by the last release.
func (s *sock) close() {
	old := s.state.Or(sockClosing)
	if old == 0 && s.state.CompareAndSwap(sockClosing, sockClosing|sockClosed) {
		s.closeFD()
	}
}

// shutWrite sends FIN once the server's close frame is written, so the peer
// sees it and EOF while its late frames are still read (drained), not
// answered with a reset. A TLS socket keeps its write side: the close
// frame's ciphertext may still be pending.
func (s *sock) shutWrite() {
	if s.tls != nil || !s.acquire() {
		return
	}
	defer s.release()
	_ = unix.Shutdown(int(s.fd), unix.SHUT_WR)
}

// read does one non-blocking read. It returns unix.EAGAIN when nothing is
// there and (0, nil) at EOF.
func (s *sock) read(p []byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.read(p)
	}
	for {
		n, err := unix.Read(int(s.fd), p)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

// writev does one non-blocking gather write of bufs (at most iovMax of
// them) using iov as scratch, and returns the bytes written.
func (s *sock) writev(iov []unix.Iovec, bufs [][]byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.write(bufs[:min(len(bufs), iovMax)])
	}
	iov = iov[:0]
	for _, b := range bufs[:min(len(bufs), iovMax)] {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	if len(iov) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(s.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
