package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/server/internal/tlsrec"
	"golang.org/x/sys/unix"
)

// TLS connections go through the same poller and pools. crypto/tls reads
// whole records into its own buffers, so "socket not readable" does not
// mean "nothing to read": readers drain tls.Conn until it reports
// errWouldBlock. Writes never block either: tlsRaw accepts all ciphertext,
// writes what the kernel takes and keeps the rest until EPOLLOUT.

// errWouldBlock is what tlsRaw.Read returns for EAGAIN. crypto/tls keeps a
// temporary error non-sticky, so the next Read resumes the record.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "server: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// tlsRaw is the transport under tls.Conn: blocking (with deadlines) during
// the TLS handshake, which runs on its own goroutine, then non-blocking.
type tlsRaw struct {
	net.Conn
	rc       syscall.RawConn
	nonblock atomic.Bool
	detached atomic.Bool // handed to net/http: closing the sock must not close it
	pre      []byte      // read ahead of crypto/tls (past a PROXY header): returned first

	mu      sync.Mutex
	pending []byte // ciphertext the kernel has not taken yet
}

func (r *tlsRaw) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	if !r.nonblock.Load() {
		return r.Conn.Read(p)
	}
	var n int
	var err error
	if cerr := r.rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), p)
		return true
	}); cerr != nil {
		return 0, cerr
	}
	switch {
	case err == unix.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (r *tlsRaw) Write(p []byte) (int, error) {
	if !r.nonblock.Load() {
		return r.Conn.Write(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) > 0 {
		r.pending = append(r.pending, p...)
		return len(p), nil
	}
	n, err := r.writeLocked(p)
	if err != nil {
		return n, err
	}
	r.pending = append(r.pending, p[n:]...)
	return len(p), nil
}

// writeLocked makes one non-blocking write attempt; EAGAIN is not an error.
func (r *tlsRaw) writeLocked(p []byte) (int, error) {
	var n int
	var err error
	if cerr := r.rc.Write(func(fd uintptr) bool {
		n, err = unix.Write(int(fd), p)
		return true
	}); cerr != nil {
		return 0, cerr
	}
	if err == unix.EAGAIN {
		return 0, nil
	}
	return max(n, 0), err
}

// flush writes pending ciphertext; it reports how much is left.
func (r *tlsRaw) flush() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return 0, nil
	}
	n, err := r.writeLocked(r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) == 0 {
		r.pending = nil
	}
	return len(r.pending), err
}

func (r *tlsRaw) pendingBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// tlsIO is a TLS connection's transport, behind sock.
type tlsIO struct {
	tc  *tls.Conn
	raw *tlsRaw
}

func (t *tlsIO) read(p []byte) (int, error) {
	n, err := t.tc.Read(p)
	switch {
	case n > 0:
		return n, nil
	case errors.Is(err, errWouldBlock):
		return 0, unix.EAGAIN
	case errors.Is(err, io.EOF):
		return 0, nil
	}
	return n, err
}

// write gathers bufs into chunks of one record's plaintext, so that
// crypto/tls seals what a flush owes into as few records (and raw writes)
// as fit, not one per frame.
func (t *tlsIO) write(bufs [][]byte) (int, error) {
	bp := sealBufs.Get().(*[]byte)
	defer sealBufs.Put(bp)
	chunk := (*bp)[:0]
	total := 0
	for _, b := range bufs {
		for len(b) > 0 {
			k := min(len(b), tlsrec.MaxPlaintext-len(chunk))
			chunk, b = append(chunk, b[:k]...), b[k:]
			if len(chunk) == tlsrec.MaxPlaintext {
				n, err := t.tc.Write(chunk)
				total += n
				if err != nil {
					return total, err
				}
				chunk = chunk[:0]
			}
		}
	}
	if len(chunk) > 0 {
		n, err := t.tc.Write(chunk)
		return total + n, err
	}
	return total, nil
}

// acceptTLS answers a socket that admission refused (status), or runs the
// TLS handshake and collects the upgrade request on a goroutine of its own,
// bounded by HandshakeTimeout, then hands the connection to the poller like
// any other.
func (s *Server) acceptTLS(nc net.Conn, sl slot, viaProxy bool, status int) {
	defer s.wg.Done()
	if status != 0 {
		s.refuseTLS(nc, status)
		return
	}
	fd := -1
	var rc syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	if rc != nil {
		_ = rc.Control(func(f uintptr) { fd = int(f) })
	}
	if fd < 0 {
		s.releaseSlot(&sl)
		nc.Close()
		return
	}
	raw := &tlsRaw{Conn: nc, rc: rc}
	hc := &tlsrec.HandshakeConn{Conn: raw}
	tc := tls.Server(hc, s.tlsConfig)
	c := s.newConn(fd, sl)
	c.startHandshake(viaProxy)
	c.sock.tls = &tlsIO{tc: tc, raw: raw}
	if err := s.track(c); err != nil {
		c.destroy(ReasonIOError)
		return
	}
	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	hs := c.hs
	if s.cfg.ProxyProtocol != ProxyProtocolOff && !c.readProxyTLS(hs, nc, raw) {
		if hs.refuse != 0 { // its client is over a per-IP limit: answer over TLS
			s.refuseTLS(raw, hs.refuse)
			c.endHandshake(nil, ReasonRateLimited)
		}
		return
	}
	hc.Pre, raw.pre = raw.pre, nil // bytes read past a PROXY header
	if err := tc.Handshake(); err != nil {
		s.log.Debug("tls handshake failed", "remote", c.slot.addr().String(), "err", err)
		c.endHandshake(nil, ReasonHandshakeFailed)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	rec, pre, err := hc.Takeover(tc)
	if err != nil {
		s.log.Debug("tls takeover failed", "remote", c.slot.addr().String(), "err", err)
		c.endHandshake(nil, ReasonHandshakeFailed)
		return
	}
	if rec != nil { // TLS 1.3: tc and nc are done with (tls13.go)
		if !s.takeover(c, raw, rec, pre) {
			return
		}
	} else {
		raw.nonblock.Store(true)
	}
	// From here on the connection is non-blocking like any other: the
	// upgrade request is collected as bytes arrive, under the same
	// handshake deadline. Records already read (by the TLS 1.2 handshake,
	// or past a PROXY header) are invisible to epoll: drain them here,
	// while this goroutine alone owns the parser, and arm the poller only
	// then.
	bp := s.getReadBuf()
	defer s.readBufPool.Put(bp)
	for buf := *bp; ; {
		n, err := c.sock.read(buf)
		if n > 0 {
			if !c.consume(buf[:n]) {
				return
			}
			continue
		}
		if err == unix.EAGAIN || err == errRecordsOnly {
			break // arming reports what else the socket holds
		}
		c.peerGone(err)
		return
	}
	if err := s.arm(c); err != nil {
		c.destroy(ReasonIOError)
	}
}

// flushTLS writes a TLS connection's pending ciphertext on EPOLLOUT.
func (c *Conn) flushTLS() {
	if !c.sock.acquire() {
		return
	}
	left, err := c.sock.flushPending()
	c.sock.release()
	switch {
	case err != nil:
		c.ioError(err)
	case left > 0:
		c.armWrite()
	default:
		if c.closeDue() {
			c.destroy(ReasonNone)
		}
	}
}

// tlsBacklog checks a TLS connection's unsent ciphertext after a write:
// past SendQueueBytes it is a slow consumer, otherwise EPOLLOUT is armed
// while some is left. It reports whether ciphertext is still pending.
func (c *Conn) tlsBacklog() bool {
	if !c.sock.secure() {
		return false
	}
	n := c.sock.pendingBytes()
	switch {
	case n > c.srv.cfg.SendQueueBytes:
		c.evictSlow()
	case n > 0:
		c.armWrite()
	}
	return n > 0
}
