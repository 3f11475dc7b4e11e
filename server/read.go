package server

import (
	"errors"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"golang.org/x/sys/unix"
)

// maxReadsPerEvent bounds the reads one event may do on one socket, so a
// flooding client yields its worker to the others (nbio's
// MaxConnReadTimesPerEventLoop).
const maxReadsPerEvent = 4

// serveRead is the read pool's task: read what the socket has without
// blocking, parse it, re-arm. It owns c's parser until it returns.
func (s *Server) serveRead(c *Conn) {
	if !c.sock.acquire() {
		return
	}
	defer c.sock.release()
	bp := s.getReadBuf()
	defer s.readBufPool.Put(bp)
	buf := *bp
	// TLS keeps decrypted records epoll cannot see: read it until it would
	// block, whatever the count.
	for i := 0; i < maxReadsPerEvent || c.sock.tls != nil; i++ {
		n, err := c.sock.read(buf)
		switch {
		case n > 0:
			c.lastRead.Store(s.now())
			if !c.consume(buf[:n]) {
				return
			}
			if c.sock.tls == nil && (n < len(buf) || c.hubBehind() != nil) {
				// Drained (a one-shot re-arm fires again if more arrived),
				// or a hub is behind: the kernel keeps the rest.
				c.readOn()
				return
			}
		case err == unix.EAGAIN:
			c.readOn()
			return
		case err == nil: // EOF
			c.peerGone(nil)
			return
		default:
			c.peerGone(err)
			return
		}
	}
	c.readOn()
}

func (s *Server) getReadBuf() *[]byte {
	if bp, ok := s.readBufPool.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, s.cfg.ReadBufferBytes)
	return &b
}

// readOn re-arms c's read, unless a hub c belongs to is behind: then c is
// parked in that hub until it catches up, so the publishers among its
// members are pushed back by TCP instead of the hub dropping their
// messages. The caller holds a socket reference; for TLS, tls.Conn must
// hold no decrypted bytes (epoll cannot see them).
func (c *Conn) readOn() {
	if h := c.hubBehind(); h != nil && h.park(c) {
		return
	}
	c.armRead()
}

// hubBehind returns a hub of c's that is behind, or nil.
func (c *Conn) hubBehind() *Hub {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hubs {
		if h.behind.Load() > 0 {
			return h
		}
	}
	return nil
}

// resumeRead re-arms the read of a parked connection. Its silence while
// parked was the server's doing, so the idle clock starts again.
func (c *Conn) resumeRead() {
	if !c.sock.acquire() {
		return
	}
	c.lastRead.Store(c.srv.now())
	c.armRead()
	c.sock.release()
}

// armRead re-arms the one-shot read interest unless c is closed. The caller
// holds a socket reference, so the fd number cannot be reused meanwhile.
func (c *Conn) armRead() {
	c.mu.Lock()
	closed := c.state == stateClosed
	c.mu.Unlock()
	if closed {
		c.parser.Reset()
		return
	}
	if err := c.srv.poller.ArmRead(c.tok()); err != nil {
		c.parser.Reset()
		c.destroy(ReasonIOError)
	}
}

// peerGone handles EOF or a read error.
func (c *Conn) peerGone(err error) {
	if err != nil && !errors.Is(err, unix.ECONNRESET) {
		c.srv.connError(c, err)
	}
	c.destroy(ReasonPeerGone)
	c.parser.Reset() // after destroy's lock: ordered after anyone who looked under c.mu
	c.releaseRequest()
}

// consume feeds bytes just read to the handshake or the frame parser. It
// returns false once c must not be read again.
func (c *Conn) consume(data []byte) bool {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case stateHandshake:
		rest, ok := c.collectRequest(data)
		if !ok {
			return false
		}
		if rest == nil {
			return true
		}
		ok = c.consumeFrames(rest)
		c.releaseRequest() // rest lived in the request buffer
		return ok
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
	for len(data) > 0 {
		m, n, err := c.parser.Parse(data)
		data = data[n:]
		if err != nil {
			return c.protocolError(err)
		}
		if c.limits != nil && m.Op != frame.OpClose && !c.limits.allow(time.Now(), &c.parser, m) {
			if !c.rateLimited() {
				return c.drain(data)
			}
			continue // dropped: a ping over the rate gets no pong
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
				_ = c.write(frame.AppendFrame(make([]byte, 0, 2+len(m.Payload)), frame.OpPong, m.Payload), false)
			}
		case frame.OpPong:
			// lastRead is already refreshed: that is all a pong is for.
		case frame.OpClose:
			code, _, _ := frame.ParseClosePayload(m.Payload)
			c.onCloseFrame(code)
			c.parser.Reset()
			return false
		}
	}
	c.parser.Parse(nil) // return the last message's pooled buffer: idle connections hold none
	return true
}

// drain reads a closing connection: the server has sent its close frame
// (and shut its side of a plain socket), so everything but the peer's close
// frame is discarded until that frame, EOF or Config.CloseTimeout. Reading
// on, rather than closing with unread bytes, keeps the kernel from
// resetting the connection before the close frame reaches the peer.
// Bytes that do not parse (after a protocol error, or a refused request)
// are discarded whole.
func (c *Conn) drain(data []byte) bool {
	for len(data) > 0 {
		m, n, err := c.parser.Parse(data)
		if err != nil {
			break
		}
		data = data[n:]
		if m.Op == frame.OpClose {
			c.parser.Reset()
			c.destroy(ReasonNone)
			return false
		}
	}
	c.parser.Parse(nil)
	return true
}

// protocolError fails the connection with the close code err carries. It
// returns whether c is to be read on (drained).
func (c *Conn) protocolError(err error) bool {
	defer c.parser.Reset()
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
