package server

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server/internal/tlsrec"
	"golang.org/x/sys/unix"
)

// A TLS 1.3 connection leaves crypto/tls once its handshake is done: the
// server takes its socket like a plain one (one fd of its own, no net.Conn,
// nothing in Go's netpoller) and internal/tlsrec opens and seals its
// records with the traffic keys. A read opens every whole record it got in
// place and keeps a partial one aside, so epoll sees everything there is to
// read and the read path is the plain one. A write seals everything a flush
// owes into as few records as fit and sends them with one send(2), as the
// plain path gives one sendmsg per flush. TLS 1.2 stays with tls.Conn
// (tls.go).

// tlsReadBytes is the least read buffer a TLS 1.3 read needs: a partial
// record kept from the last read and at least as much again.
const tlsReadBytes = 2 * tlsrec.MaxRecord

// errRecordsOnly is what recIO.read returns when the bytes it read held no
// application data: a partial record, a KeyUpdate, an empty record.
var errRecordsOnly = errors.New("server: no application data in the records read")

// maxPooledSeal bounds the seal buffers kept for reuse: a flush of more
// than this allocates its own.
const maxPooledSeal = 256 << 10

var (
	partialRecords = sync.Pool{New: func() any { b := make([]byte, 0, tlsrec.MaxRecord); return &b }}
	sealBufs       = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
)

// recIO is a TLS 1.3 connection's record layer, behind sock.
type recIO struct {
	rec      *tlsrec.Conn
	srv      *Server
	in       *[]byte // a partial record (pooled), owned by the read task; nil when there is none
	short    bool    // the last read took less than it could: the socket is drained
	lastRead int64   // Server.now() of the last read that drained the socket; read task only

	mu      sync.Mutex
	pending []byte // sealed records the kernel has not taken yet
	sealed  bool   // records were sealed since the last sweep tick
	noClose bool   // no close_notify as the socket closes: an error alert ended the stream, or net/http carries it on (toHTTP)
}

// read reads the socket once into p (at least tlsReadBytes, after the
// partial record kept from the last read), opens every whole record in
// place and returns their application data at the start of p. At EOF or
// close_notify it returns (0, nil); errRecordsOnly when no application
// data came; a record that breaks RFC 8446 is answered with its alert.
func (r *recIO) read(fd int32, p []byte) (int, error) {
	k := 0
	if r.in != nil {
		k = copy(p, *r.in)
		*r.in = (*r.in)[:0]
		partialRecords.Put(r.in)
		r.in = nil
	}
	n, err := readFD(fd, p[k:])
	r.short = n < len(p)-k
	if err != nil {
		r.keep(p[:k])
		r.idle()
		return 0, err
	}
	if n == 0 {
		return 0, nil // EOF: without close_notify the stream may be truncated, but it ends either way
	}
	k += n
	out, off := 0, 0
	for {
		m, err := tlsrec.RecordLen(p[off:k])
		if err != nil {
			return 0, r.fail(fd, err)
		}
		if m == 0 || off+m > k {
			break
		}
		pt, err := r.rec.Open(p[off : off+m])
		if errors.Is(err, tlsrec.ErrCloseNotify) {
			return 0, nil
		}
		if err != nil {
			return 0, r.fail(fd, err)
		}
		out += copy(p[out:], pt) // out <= off: plaintext moves down only
		off += m
	}
	r.keep(p[off:k])
	if r.short {
		r.idle()
	}
	if out == 0 {
		return 0, errRecordsOnly
	}
	return out, nil
}

// idle runs when a read drained the socket. It drops the read keys of a
// connection that reads rarely (its last read was over readKeysIdle ago)
// and has no partial record: most connections then wait long for their
// next record, and an idle connection keeps no AEAD state (the next read
// rebuilds it, about a microsecond and 1.3 KB of garbage). A connection
// that reads often keeps them.
func (r *recIO) idle() {
	now := r.srv.now()
	if r.in == nil && now-r.lastRead > int64(readKeysIdle) {
		r.rec.DropReadKeys()
	}
	r.lastRead = now
}

// readKeysIdle is how rarely a connection reads for idle to drop its read
// keys.
const readKeysIdle = time.Second

// sweep runs once per tick of the server's sweep: it drops the write keys
// of a connection that sealed nothing since the last tick.
func (r *recIO) sweep() {
	r.mu.Lock()
	if !r.sealed && len(r.pending) == 0 {
		r.rec.DropWriteKeys()
	}
	r.sealed = false
	r.mu.Unlock()
}

// keep holds b, the start of a record, for the next read.
func (r *recIO) keep(b []byte) {
	if len(b) > 0 {
		r.in = partialRecords.Get().(*[]byte)
		*r.in = append(*r.in, b...)
	}
}

// closeNotify sends close_notify as the socket closes (RFC 8446 6.1: each
// party sends it before closing its write side), so that the peer can tell
// the end of the stream from a truncation: not after an error alert, nor
// behind ciphertext the kernel did not take (the close is not clean then),
// nor for a stream handed to net/http (its NetConn sends it).
func (r *recIO) closeNotify(fd int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.noClose && len(r.pending) == 0 {
		_, _ = sendFD(fd, r.rec.SealAlert(nil, tlsrec.AlertCloseNotify))
	}
}

// handOff keeps closeNotify quiet: the stream goes on over a dup of the
// socket (toHTTP).
func (r *recIO) handOff() {
	r.mu.Lock()
	r.noClose = true
	r.mu.Unlock()
}

// release gives back a partial record; the connection is closed.
func (r *recIO) release() {
	if r.in != nil {
		*r.in = (*r.in)[:0]
		partialRecords.Put(r.in)
		r.in = nil
	}
}

// fail answers a record that breaks the protocol with its alert (RFC 8446
// 6.2), if nothing else waits to be sent, and returns err.
func (r *recIO) fail(fd int32, err error) error {
	var e *tlsrec.Error
	if errors.As(err, &e) {
		r.mu.Lock()
		if len(r.pending) == 0 {
			_, _ = sendFD(fd, r.rec.SealAlert(nil, e.Alert))
			r.noClose = true
		}
		r.mu.Unlock()
	}
	return fmt.Errorf("server: tls: %w", err)
}

// send seals bufs and sends the records with one send(2). Like tlsIO it
// takes everything: what the kernel refuses waits, sealed, in pending
// (bounded by SendQueueBytes, see Conn.tlsBacklog) for EPOLLOUT.
func (r *recIO) send(fd int32, bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sealed = true
	records := (total + tlsrec.MaxPlaintext - 1) / tlsrec.MaxPlaintext
	r.srv.stats.tlsRecords.Add(uint64(records))
	if len(r.pending) > 0 {
		r.pending = r.rec.Seal(r.pending, bufs)
		return total, nil
	}
	bp := sealBufs.Get().(*[]byte)
	out := r.rec.Seal((*bp)[:0], bufs)
	r.srv.stats.tlsWrites.Add(1)
	r.srv.stats.recordsPerWrite[min(bits.Len(uint(max(records, 1)-1)), writeBuckets-1)].Add(1)
	n, err := sendFD(fd, out)
	if err != nil {
		return 0, err
	}
	if n < len(out) {
		r.pending = append([]byte(nil), out[n:]...)
	}
	if cap(out) <= maxPooledSeal {
		*bp = out[:0]
		sealBufs.Put(bp)
	}
	return total, nil
}

// flush sends pending records; it reports how many bytes are left.
func (r *recIO) flush(fd int32) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return 0, nil
	}
	n, err := sendFD(fd, r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) == 0 {
		r.pending = nil
	}
	return len(r.pending), err
}

func (r *recIO) pendingBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// sendFD makes one non-blocking send of b; EAGAIN is not an error.
func sendFD(fd int32, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var iov [1]unix.Iovec
	iov[0] = unix.Iovec{Base: &b[0]}
	iov[0].SetLen(len(b))
	for {
		n, errno := sendIovec(fd, iov[:])
		switch errno {
		case 0:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, errno
		}
	}
}

// takeover moves c, whose TLS 1.3 handshake over raw is done, to rec: the
// socket becomes a descriptor of the server's own (a duplicate; Go's is
// closed), in the fd table under its new number, and pre (bytes read
// ahead of crypto/tls) are the first to open. It reports false, with c
// destroyed, if that fails or c was closed meanwhile.
func (s *Server) takeover(c *Conn, raw *tlsRaw, rec *tlsrec.Conn, pre []byte) bool {
	if len(pre) > tlsrec.MaxRecord {
		c.destroy(ReasonProtocolError) // a PROXY read-ahead is 256 bytes at most
		return false
	}
	fd := -1
	var err error
	if cerr := raw.rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		err = cerr
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		c.destroy(ReasonIOError)
		return false
	}
	r := &recIO{rec: rec, srv: s}
	r.keep(pre)
	c.mu.Lock()
	if c.life.current() == stateClosed || fd >= len(s.conns) {
		c.mu.Unlock()
		_ = unix.Close(fd)
		c.destroy(ReasonIOError)
		return false
	}
	s.conns[c.sock.fd].CompareAndSwap(c, nil)
	c.sock.fd, c.sock.tls, c.sock.rec = int32(fd), nil, r
	s.conns[fd].Store(c)
	c.mu.Unlock()
	raw.Conn.Close()
	return true
}
