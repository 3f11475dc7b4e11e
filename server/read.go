package server

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"golang.org/x/sys/unix"
)

// reader is a Conn's read part. Only the holder of the read event (reading:
// an epoll event's task, or the goroutine that attaches the connection)
// touches p and limits.
type reader struct {
	lastRead atomic.Int64  // Server.now() of the last bytes received
	reading  atomic.Int32  // readIdle, readBusy or readAgain
	p        *frame.Parser // lent by parsers while a frame or message is incomplete, else nil
	limits   *connLimits   // per-connection rate limits, nil when off
}

// parsers lends frame parsers: a connection between messages holds none,
// so an idle one is smaller by a Parser.
var parsers = sync.Pool{New: func() any { return new(frame.Parser) }}

// parser returns c's parser, lending it one if it has none.
func (c *Conn) parser() *frame.Parser {
	if c.rd.p == nil {
		p := parsers.Get().(*frame.Parser)
		p.Role, p.MaxMessageBytes, p.Deflate = frame.ServerSide, c.srv.cfg.MaxMessageBytes, c.Compressed()
		p.DeferInflate = true // consumeFrames charges the rate limits first
		c.rd.p = p
	}
	return c.rd.p
}

// resetParser drops c's parse state and gives its parser back.
func (c *Conn) resetParser() {
	p := c.rd.p
	if p == nil {
		return
	}
	c.rd.p = nil
	p.Reset()
	parsers.Put(p)
	c.rd.limits.parserReset()
}

// lastReadAt is when c last received bytes, Server.now() units.
func (c *Conn) lastReadAt() int64 { return c.rd.lastRead.Load() }

// maxReadsPerEvent bounds the reads one event may do on one socket, so a
// flooding client yields its worker to the others (nbio's
// MaxConnReadTimesPerEventLoop).
const maxReadsPerEvent = 4

// serveRead is the read pool's task: read what the socket has without
// blocking, parse it, and end once the socket is drained. Reads are
// edge-triggered: an event that arrives while the task runs only asks it
// to read on (claimRead), so c's parser has one owner and a pass needs no
// epoll_ctl.
func (s *Server) serveRead(c *Conn) {
	if !c.sock.acquire() {
		return
	}
	defer c.sock.release()
	bp := s.getReadBuf()
	defer s.readBufPool.Put(bp)
	buf := *bp
	for range maxReadsPerEvent {
		n, err := c.sock.read(buf)
		switch {
		case n > 0:
			c.rd.lastRead.Store(s.now())
			if !c.consume(buf[:n]) {
				return
			}
			if !c.readDone(c.sock.drained(n, len(buf))) {
				return
			}
		case err == errRecordsOnly: // a KeyUpdate, an empty or partial record
			c.rd.lastRead.Store(s.now())
			if !c.readDone(c.sock.drained(0, len(buf))) {
				return
			}
		case err == unix.EAGAIN:
			if !c.readDone(true) {
				return
			}
		case err == nil: // EOF
			c.peerGone(nil)
			return
		default:
			c.peerGone(err)
			return
		}
	}
	// Out of budget with bytes still waiting: yield the worker.
	if !c.parkIfBehind() {
		c.readOn()
	}
}

// The read states of a connection, in Conn.reading.
const (
	readIdle  = iota // no task: an event starts one
	readBusy         // a task reads c (or c is parked in a hub)
	readAgain        // and an event arrived since: the task reads on
)

// claimRead is called for each read event: it reports whether the event
// starts a task, or only tells the running one to read on.
func (c *Conn) claimRead() bool {
	for {
		switch c.rd.reading.Load() {
		case readIdle:
			if c.rd.reading.CompareAndSwap(readIdle, readBusy) {
				return true
			}
		case readBusy:
			if c.rd.reading.CompareAndSwap(readBusy, readAgain) {
				return false
			}
		default:
			return false
		}
	}
}

// readDone follows each read: c is parked while a hub of its is behind,
// else reading goes on while the socket may hold more; once it is drained
// the task ends, unless an event arrived during the pass. It reports
// whether to read on.
func (c *Conn) readDone(drained bool) bool {
	if c.parkIfBehind() {
		return false
	}
	if !drained {
		return true
	}
	if c.rd.reading.CompareAndSwap(readBusy, readIdle) {
		return false
	}
	c.rd.reading.Store(readBusy) // readAgain: an event came during the pass
	return true
}

func (s *Server) getReadBuf() *[]byte {
	if bp, ok := s.readBufPool.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, s.readBytes)
	return &b
}

// parkIfBehind stops reading c while a hub of its is behind, so the
// publishers among its members are pushed back by TCP instead of the hub
// dropping their messages; the hub resumes c once it caught up. It
// reports whether c was parked.
func (c *Conn) parkIfBehind() bool {
	h := c.hubBehind()
	return h != nil && h.park(c)
}

// hubBehind returns a hub of c's that is behind, or nil.
func (c *Conn) hubBehind() *Hub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.app.behind()
}

// resumeRead reads a parked connection again. Its silence while parked
// was the server's doing, so the idle clock starts again.
func (c *Conn) resumeRead() {
	if !c.sock.acquire() {
		return
	}
	c.rd.lastRead.Store(c.srv.now())
	c.readOn()
	c.sock.release()
}

// readOn ends the ownership of c's reads by a task that left bytes unread,
// or by a hub c was parked in: no new edge would report those bytes. A
// plain socket's are reported by epoll, asked for an event now if the
// socket is readable. crypto/tls may hold records epoll cannot see, so a
// TLS connection's next task is queued on the read pool instead, behind
// the events already waiting for a worker. The caller owns c's parser
// (reset here if c is closed) and holds a socket reference, so the fd
// number cannot be reused meanwhile.
func (c *Conn) readOn() {
	c.mu.Lock()
	closed := c.life.current() == stateClosed
	c.mu.Unlock()
	if closed {
		c.resetParser()
		return
	}
	if c.sock.tls != nil {
		c.srv.requeueRead(c)
		return
	}
	c.rd.reading.Store(readIdle) // from here another task may own the parser
	if err := c.srv.poller.ArmRead(c.tok()); err != nil {
		c.destroy(ReasonIOError)
	}
}

// peerGone handles EOF or a read error.
func (c *Conn) peerGone(err error) {
	if err != nil && !errors.Is(err, unix.ECONNRESET) {
		c.srv.connError(c, err)
	}
	c.destroy(ReasonPeerGone)
	c.resetParser() // after destroy's lock: ordered after anyone who looked under c.mu
	c.hs.releaseRequest()
}

// consume feeds bytes just read to the handshake or the frame parser. It
// returns false once c must not be read again.
func (c *Conn) consume(data []byte) bool {
	c.mu.Lock()
	st := c.life.current()
	c.mu.Unlock()
	switch st {
	case stateHandshake:
		return c.handshakeBytes(data)
	case stateOpen:
		c.srv.stats.bytesIn.Add(uint64(len(data)))
		return c.consumeFrames(data)
	case stateClosing:
		c.srv.stats.bytesIn.Add(uint64(len(data)))
		return c.drain(data)
	default:
		return false
	}
}

// consumeFrames parses data and acts on every complete message. When it
// closes c it goes on reading, in drain.
func (c *Conn) consumeFrames(data []byte) bool {
	s := c.srv
	p := c.parser()
	for len(data) > 0 {
		m, n, err := p.Parse(data)
		data = data[n:]
		if err != nil {
			return c.protocolError(err)
		}
		// A compressed message is charged as it arrived, and inflated only
		// within the rate; then what it inflated to is charged too.
		if c.rd.limits != nil && m.Op != frame.OpClose && !c.rd.limits.allow(time.Now(), p, m) {
			if !c.rateLimited() {
				return c.drain(data)
			}
			continue // dropped: a ping over the rate gets no pong
		}
		wire := len(m.Payload)
		if err := p.Inflate(&m); err != nil {
			return c.protocolError(err)
		}
		if c.rd.limits != nil {
			c.rd.limits.chargeInflated(time.Now(), len(m.Payload)-wire)
		}
		switch m.Op {
		case frame.OpContinuation: // need more bytes
		case frame.OpText, frame.OpBinary:
			s.stats.messagesIn.Add(1)
			if s.cfg.CheckMessage != nil {
				if err := s.cfg.CheckMessage(c, m.Op, m.Payload); err != nil {
					s.stats.invalidMessages.Add(1)
					s.connError(c, err)
					_ = c.closeWith(frame.ClosePolicyViolation, err.Error(), ReasonInvalidMessage, true)
					return c.drain(data)
				}
			}
			if c.isOpen() && s.cfg.OnMessage != nil {
				s.cfg.OnMessage(c, m.Op, m.Payload)
			}
		case frame.OpPing:
			if c.isOpen() {
				_ = c.write(frame.AppendFrame(make([]byte, 0, 2+len(m.Payload)), frame.OpPong, m.Payload), notClose)
			}
		case frame.OpPong:
			// lastRead is already refreshed: that is all a pong is for.
		case frame.OpClose:
			code, _, _ := frame.ParseClosePayload(m.Payload)
			c.onCloseFrame(code)
			c.resetParser()
			return false
		}
	}
	c.endPass()
	return true
}

// endPass ends a pass over the bytes read: the last message's pooled buffer
// goes back, and the parser too if no frame is left incomplete, so idle
// connections hold neither.
func (c *Conn) endPass() {
	p := c.rd.p
	p.Parse(nil)
	if p.Idle() {
		c.resetParser()
	}
}

// drain reads a closing connection: the server has sent its close frame
// (and shut its side of a plain socket), so everything but the peer's close
// frame is discarded until that frame, EOF or Config.CloseTimeout. Reading
// on, rather than closing with unread bytes, keeps the kernel from
// resetting the connection before the close frame reaches the peer.
// Bytes that do not parse (after a protocol error, or a refused request)
// are discarded whole.
func (c *Conn) drain(data []byte) bool {
	p := c.parser()
	for len(data) > 0 {
		m, n, err := p.Parse(data)
		if err != nil {
			break
		}
		data = data[n:]
		if m.Op == frame.OpClose {
			c.resetParser()
			c.destroy(ReasonNone)
			return false
		}
	}
	c.endPass()
	return true
}

// protocolError fails the connection with the close code err carries. It
// returns whether c is to be read on (drained).
func (c *Conn) protocolError(err error) bool {
	defer c.resetParser()
	code := frame.CloseProtocolError
	var pe *frame.ProtocolError
	if errors.As(err, &pe) {
		code = pe.Code
	}
	if pe == frame.ErrBadDeflate || pe == frame.ErrInflatedTooBig {
		c.srv.stats.inflateErrors.Add(1)
	}
	c.srv.connError(c, err)
	reason := ""
	if pe != nil {
		reason = pe.Reason
	}
	if c.closeWith(code, reason, ReasonProtocolError, true) != nil {
		c.destroy(ReasonProtocolError) // already closing: stop here
		return false
	}
	return true
}
