package server

import "github.com/fanout-ws/fanout/frame"

type connState uint8

const (
	stateHandshake connState = iota // collecting the upgrade request
	stateOpen                       // frames flow both ways
	stateClosing                    // close frame sent or received; no new frames
	stateClosed                     // deregistered, fd released
)

// closeAfter is what a frame given to Conn.write is: not a close frame, or
// a close frame and what the server does once it is written.
type closeAfter uint8

const (
	notClose  closeAfter = iota // a data or control frame other than close
	closeWait                   // wait for the peer's close frame
	closeFin                    // close the socket: the peer's close was answered
	closeShut                   // shut the write side and drain reads (Conn.drain)
)

// lifecycle is a Conn's part that says where it is in its life and when it
// must move on: owned by this file (state changes, close handshake) and
// timers.go (deadlines, pings), under Conn.mu. Other files ask through its
// methods.
type lifecycle struct {
	state     connState
	connected bool // OnConnect accepted it: OnClose is owed
	reason    CloseReason
	code      frame.CloseCode
	// deadline is, in Server.now() units, the handshake's deadline in
	// stateHandshake, the close handshake's in stateClosing, and in
	// stateOpen when the last ping was sent (0: none yet): a connection
	// waits for one of them at a time.
	deadline int64
	expires  int64 // when the token expires (Server.now units), or 0
	warned   bool  // OnExpiring ran for expires
}

// current is c's state; the caller holds Conn.mu.
func (l *lifecycle) current() connState { return l.state }

// open moves a connection whose handshake succeeded to open; OnClose is
// owed from now on. The caller holds Conn.mu.
func (l *lifecycle) open() {
	l.state = stateOpen
	l.connected = true
	l.deadline = 0 // no ping sent yet
}

// refused starts a refused socket's linger: closing, until deadline.
func (l *lifecycle) refused(reason CloseReason, deadline int64) {
	l.state, l.reason, l.deadline = stateClosing, reason, deadline
}

// setDeadline sets the handshake deadline of a Conn not yet shared.
func (l *lifecycle) setDeadline(handshake int64) { l.deadline = handshake }

// setExpiry records when c's token expires; the caller holds Conn.mu.
func (l *lifecycle) setExpiry(t int64) { l.expires, l.warned = t, false }

// Close starts the closing handshake with code and reason: queued messages
// are sent first, then the close frame; the socket closes when the peer
// answers or after Config.CloseTimeout. Calling it again is a no-op.
func (c *Conn) Close(code frame.CloseCode, reason string) error {
	return c.closeWith(code, reason, ReasonServerClosed, false)
}

func (c *Conn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.state == stateOpen
}

// closeWith queues a close frame behind the pending messages and moves c to
// closing. With fin (protocol errors, policy, timeouts) the server shuts
// its side of the socket as soon as the frame is written and reads on,
// discarding, until the peer's close frame or EOF (drain); otherwise it
// waits for the peer's close frame. Either way Config.CloseTimeout bounds
// the wait.
func (c *Conn) closeWith(code frame.CloseCode, text string, reason CloseReason, fin bool) error {
	c.mu.Lock()
	if c.life.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	c.life.state = stateClosing
	c.life.code, c.life.reason = code, reason
	c.life.deadline = c.srv.now() + int64(c.srv.cfg.CloseTimeout)
	c.mu.Unlock()
	then := closeWait
	if fin {
		then = closeShut
	}
	return c.write(frame.AppendFrame(nil, frame.OpClose, frame.AppendClosePayload(nil, code, text)), then)
}

// onCloseFrame handles the peer's close frame: it ends a handshake the server
// started, or answers with the same code and closes once that is written.
func (c *Conn) onCloseFrame(code frame.CloseCode) {
	c.mu.Lock()
	switch c.life.state {
	case stateClosing:
		c.mu.Unlock()
		c.destroy(ReasonNone)
		return
	case stateOpen:
		c.life.state = stateClosing
		c.life.code, c.life.reason = code, ReasonClientClosed
		c.life.deadline = c.srv.now() + int64(c.srv.cfg.CloseTimeout)
		c.mu.Unlock()
		_ = c.write(frame.AppendFrame(nil, frame.OpClose, frame.AppendClosePayload(nil, code, "")), closeFin)
	default:
		c.mu.Unlock()
	}
}

// destroy closes c now, without a close handshake: it deregisters the fd,
// leaves every hub and releases the socket and the slot. Safe to call more
// than once. It is the one place that ends every part of c: each part
// gives up what it holds through its own method.
func (c *Conn) destroy(reason CloseReason) {
	c.mu.Lock()
	l := &c.life
	if l.state == stateClosed {
		c.mu.Unlock()
		return
	}
	if l.reason == ReasonNone {
		l.reason = reason
	}
	if l.code == 0 {
		l.code = frame.CloseAbnormal
	}
	l.state = stateClosed
	c.out.dropLocked()
	hubs := c.app.takeHubs()
	failed, attached := c.hs.end(l.reason)
	code, why, connected, tok, sl := l.code, l.reason, l.connected, c.sock.token(), c.slot.take()
	c.mu.Unlock()
	runAttached(attached, false)
	if failed {
		c.srv.handshakeFailed()
	}

	s := c.srv
	for _, h := range hubs {
		h.refs.Add(-1)
	}
	if c.sock.fd >= 0 {
		_ = s.poller.Deregister(tok)
		for _, h := range hubs {
			h.remove(c)
		}
		s.conns[c.sock.fd].CompareAndSwap(c, nil)
		c.sock.close()
	}
	s.connClosed(c, code, why, connected, &sl)
}
