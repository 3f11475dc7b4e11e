//go:build linux

package server

import (
	"net"
	"sync/atomic"
	"unsafe"

	"github.com/fanout-ws/fanout/poller"

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
	gen   uint32 // the poller registration's generation (0: not registered), under Conn.mu
	tls   *tlsIO // non-nil for TLS 1.2: I/O goes through crypto/tls, and Go owns the fd
	rec   *recIO // non-nil for TLS 1.3 after its handshake: records sealed and opened here
}

// token is the socket's poller registration; the caller holds Conn.mu.
func (s *sock) token() poller.Token { return poller.Token{FD: s.fd, Gen: s.gen} }

// registered records the socket's poller registration; the caller holds
// Conn.mu.
func (s *sock) registered(t poller.Token) { s.gen = t.Gen }

// closeFD closes the socket for good.
func (s *sock) closeFD() {
	if s.tls != nil {
		if !s.tls.raw.detached.Load() {
			_ = s.tls.raw.Conn.Close()
		}
		return
	}
	if s.rec != nil {
		s.rec.release()
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
	if s.tls != nil || s.rec != nil || !s.acquire() {
		return
	}
	defer s.release()
	_ = unix.Shutdown(int(s.fd), unix.SHUT_WR)
}

// secure reports whether TLS seals s's bytes: writes then take everything
// and keep unsent ciphertext themselves (pendingBytes, flushPending).
func (s *sock) secure() bool { return s.tls != nil || s.rec != nil }

// pendingBytes is the ciphertext a TLS socket holds unsent.
func (s *sock) pendingBytes() int {
	switch {
	case s.tls != nil:
		return s.tls.raw.pendingBytes()
	case s.rec != nil:
		return s.rec.pendingBytes()
	}
	return 0
}

// flushPending sends a TLS socket's pending ciphertext; it reports how
// much is left. The caller holds a reference.
func (s *sock) flushPending() (int, error) {
	if s.tls != nil {
		return s.tls.raw.flush()
	}
	return s.rec.flush(s.fd)
}

// drained reports whether a read of n bytes into a buffer of size has
// emptied the socket: a short plain read, or a short read under a TLS 1.3
// record layer. A TLS 1.2 read returns one record at most: only EAGAIN
// tells there.
func (s *sock) drained(n, size int) bool {
	switch {
	case s.tls != nil:
		return false
	case s.rec != nil:
		return s.rec.short
	}
	return n < size
}

// read does one non-blocking read. It returns unix.EAGAIN when nothing is
// there and (0, nil) at EOF.
//
// read and sendIovec use RawSyscall: every socket here is non-blocking
// (poller.Detach, the bridge's socketpair), so the call returns in
// microseconds whatever the peer does, and skipping entersyscall and
// exitsyscall keeps the P: sysmon never hands it to another thread
// mid-call, and no thread wakes to take it. Measured on one pinned core
// (issue 9): 19,000 x 5/s broadcast server CPU -9%, echo round trips +10%.
func (s *sock) read(p []byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.read(p)
	}
	if s.rec != nil {
		return s.rec.read(s.fd, p)
	}
	return readFD(s.fd, p)
}

// readFD is one raw non-blocking read(2).
func readFD(fd int32, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}

// send does one non-blocking gather write of bufs (at most iovMax of
// them) using iov as scratch, and returns the bytes written.
func (s *sock) send(iov []unix.Iovec, bufs [][]byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.write(bufs[:min(len(bufs), iovMax)])
	}
	if s.rec != nil {
		return s.rec.send(s.fd, bufs[:min(len(bufs), iovMax)])
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
		n, errno := sendIovec(s.fd, iov)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return n, nil
	}
}

// sendIovec sends iov (at least one buffer) with send(2) or sendmsg(2),
// straight to the socket layer (writev(2)'s file layer, vfs_writev and
// fdget_pos, was 6% of a broadcast's kernel samples; end to end the change
// is within noise). MSG_NOSIGNAL: a closed peer is EPIPE, not a signal.
// A raw syscall, like read's.
func sendIovec(fd int32, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 1 {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len), unix.MSG_NOSIGNAL, 0, 0)
		return int(n), errno
	}
	msg := unix.Msghdr{Iov: &iov[0]}
	msg.SetIovlen(len(iov))
	n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
	return int(n), errno
}
