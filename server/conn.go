package server

// Lock order: Hub shard mu (never held while taking a Conn's mu) → Conn.mu.
// No lock is held during a read or write: a writer takes ownership of the
// socket (Conn.writing) under mu, then writes unlocked. The one syscall made
// under Conn.mu is the epoll_ctl that registers the fd (Server.arm).

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/poller"
)

type connState uint8

const (
	stateHandshake connState = iota // collecting the upgrade request
	stateOpen                       // frames flow both ways
	stateClosing                    // close frame sent or received; no new frames
	stateClosed                     // deregistered, fd released
)

// Conn is one WebSocket connection. Its methods are safe for concurrent use.
// A Conn owns no goroutine, and no buffer while idle.
type Conn struct {
	lastRead atomic.Int64 // Server.now() of the last bytes received
	sock     sock

	srv    *Server
	id     uint64
	remote netip.AddrPort
	token  poller.Token

	mu        sync.Mutex
	state     connState
	writing   bool     // a goroutine owns the socket for writing (or waits for EPOLLOUT)
	finAfter  bool     // close the socket once the queue is flushed
	q         [][]byte // frames (or their unwritten tails) waiting for the socket
	qBytes    int      // bytes in q
	deadline  int64    // handshake or close-handshake deadline, Server.now() units
	lastPing  int64    // when the last ping was sent
	code      frame.CloseCode
	reason    CloseReason
	hubs      []*Hub
	data      any
	protocol  string
	connected bool        // OnConnect accepted it: OnClose is owed
	refuse    int         // HTTP status to answer instead of upgrading (503, 429), or 0
	admitted  bool        // counted by the per-IP limits: release on close
	parked    bool        // a write waits for EPOLLOUT that could not be armed before registration
	limits    *connLimits // per-connection rate limits, nil when off
	claims    map[string]any
	pending   *[]pendingSub // subscribes made before the socket was known (Handler): track runs them

	// zbits is the permessage-deflate window, in bits, the client allowed
	// the server (0: not negotiated). Set before OnConnect, then only read.
	zbits uint8

	// Owned by the worker that holds the read event.
	parser  frame.Parser
	request []byte // pooled, while the upgrade request is incomplete
}

// ID is unique per Server for the life of the process.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// Protocol is the negotiated subprotocol, or "".
func (c *Conn) Protocol() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.protocol
}

// Data returns what SetData stored.
func (c *Conn) Data() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data
}

// SetData attaches application data to c.
func (c *Conn) SetData(v any) {
	c.mu.Lock()
	c.data = v
	c.mu.Unlock()
}

// Send queues one unfragmented message for c. It never blocks: what the
// socket does not take now waits in c's bounded queue.
func (c *Conn) Send(op frame.OpCode, data []byte) error {
	if len(data) > c.srv.cfg.MaxMessageBytes {
		return ErrTooLarge
	}
	return c.SendPrepared(frame.NewPrepared(op, data))
}

// SendPrepared queues a message serialized once for many receivers, in
// the variant c negotiated (compressed or not).
func (c *Conn) SendPrepared(p *frame.Prepared) error {
	return c.write(c.frameBytes(p), false)
}

// Compressed reports whether c negotiated permessage-deflate.
func (c *Conn) Compressed() bool { return c.zbits != 0 }

// Close starts the closing handshake with code and reason: queued messages
// are sent first, then the close frame; the socket closes when the peer
// answers or after Config.CloseTimeout. Calling it again is a no-op.
func (c *Conn) Close(code frame.CloseCode, reason string) error {
	return c.closeWith(code, reason, ReasonServerClosed, false)
}

func (c *Conn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateOpen
}

// closeWith queues a close frame behind the pending messages and moves c to
// closing. With fin the socket closes as soon as the frame is written
// (protocol errors, timeouts); otherwise the server waits for the peer's
// close frame until Config.CloseTimeout.
func (c *Conn) closeWith(code frame.CloseCode, text string, reason CloseReason, fin bool) error {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	c.state = stateClosing
	c.code, c.reason = code, reason
	c.deadline = c.srv.now() + int64(c.srv.cfg.CloseTimeout)
	c.finAfter = fin
	c.mu.Unlock()
	return c.write(frame.AppendFrame(nil, frame.OpClose, frame.AppendClosePayload(nil, code, text)), true)
}

// onCloseFrame handles the peer's close frame: it ends a handshake the server
// started, or answers with the same code and closes once that is written.
func (c *Conn) onCloseFrame(code frame.CloseCode) {
	c.mu.Lock()
	switch c.state {
	case stateClosing:
		c.mu.Unlock()
		c.destroy(ReasonNone)
		return
	case stateOpen:
		c.state = stateClosing
		c.code, c.reason = code, ReasonClientClosed
		c.deadline = c.srv.now() + int64(c.srv.cfg.CloseTimeout)
		c.finAfter = true
		c.mu.Unlock()
		_ = c.write(frame.AppendFrame(nil, frame.OpClose, frame.AppendClosePayload(nil, code, "")), true)
	default:
		c.mu.Unlock()
	}
}

// destroy closes c now, without a close handshake: it deregisters the fd,
// leaves every hub and releases the socket. Safe to call more than once.
func (c *Conn) destroy(reason CloseReason) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	if c.reason == ReasonNone {
		c.reason = reason
	}
	if c.code == 0 {
		c.code = frame.CloseAbnormal
	}
	c.state = stateClosed
	clear(c.q)
	c.q, c.qBytes = nil, 0
	hubs := c.hubs
	c.hubs = nil
	code, why, connected, token, admitted := c.code, c.reason, c.connected, c.token, c.admitted
	c.admitted = false
	c.mu.Unlock()
	if admitted {
		c.srv.release(c.remote.Addr())
	}

	s := c.srv
	for _, h := range hubs {
		h.refs.Add(-1)
	}
	if c.sock.fd >= 0 {
		_ = s.poller.Deregister(token)
		for _, h := range hubs {
			h.remove(c)
		}
		s.conns[c.sock.fd].CompareAndSwap(c, nil)
		c.sock.close()
	}
	s.connClosed(c, code, why, connected)
}

// tok returns c's poller registration.
func (c *Conn) tok() poller.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// pollHandler adapts Conn to poller.Handler without exporting the methods.
type pollHandler Conn

func (h *pollHandler) Readable(poller.Event) { (*Conn)(h).srv.dispatchRead((*Conn)(h)) }
func (h *pollHandler) Writable(poller.Event) { (*Conn)(h).srv.dispatchWrite((*Conn)(h)) }

// timeNow is the clock behind Server.now, in nanoseconds.
func timeNow() int64 { return time.Now().UnixNano() }
