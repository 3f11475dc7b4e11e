package server

import (
	"sync/atomic"

	"github.com/fanout-ws/fanout/poller"

	"golang.org/x/sys/unix"
)

const (
	sockClosing = 1 << 62 // close requested: no new references
	sockClosed  = 1 << 63 // the number has been closed
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
		s.rec.closeNotify(s.fd)
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
