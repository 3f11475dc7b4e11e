package server

// Lock order: Hub shard mu (never held while taking a Conn's mu) → Conn.mu.
// No lock is held during a read or write: a writer takes ownership of the
// socket (Conn.writing) under mu, then writes unlocked. The one syscall made
// under Conn.mu is the epoll_ctl that registers the fd (Server.arm).

import (
	"net/netip"
	"slices"
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

// closeAfter is what the server does once its close frame is written.
type closeAfter uint8

const (
	closeWait closeAfter = iota // wait for the peer's close frame
	closeFin                    // close the socket: the peer's close was answered
	closeShut                   // shut the write side and drain reads (Conn.drain)
)

// Conn is one WebSocket connection. Its methods are safe for concurrent use.
// A Conn owns no goroutine, and no buffer while idle.
type Conn struct {
	lastRead atomic.Int64 // Server.now() of the last bytes received
	reading  atomic.Int32 // readIdle, readBusy or readAgain (read.go)
	sock     sock

	srv   *Server
	id    uint64
	slot  slot // the client's address and its places in the limits (admission.go)
	token poller.Token

	mu        sync.Mutex
	state     connState
	writing   bool       // a goroutine owns the socket for writing (or waits for EPOLLOUT)
	finAfter  bool       // close the socket once the queue is flushed
	shutAfter bool       // shut the write side once the queue is flushed, and drain reads
	then      closeAfter // what the close frame being sent is followed by: writeFrames sets finAfter or shutAfter as it takes the frame
	q         [][]byte   // frames (or their unwritten tails) waiting for the socket
	qBytes    int        // bytes in q
	deadline  int64      // handshake or close-handshake deadline, Server.now() units
	lastPing  int64      // when the last ping was sent
	code      frame.CloseCode
	reason    CloseReason
	hubs      []*Hub
	data      any
	protocol  string
	connected bool        // OnConnect accepted it: OnClose is owed
	parked    bool        // a write waits for EPOLLOUT that could not be armed before registration
	zbits     uint8       // permessage-deflate window the client allowed, in bits (0: none); set before OnConnect, then only read, without mu
	limits    *connLimits // per-connection rate limits, nil when off
	claims    map[string]any
	expires   int64 // when the token expires (Server.now units), or 0

	// hs is the handshake's state, nil from the 101 on. Set and dropped
	// under mu by its owner, the goroutine that runs the handshake, which
	// alone reads it without mu.
	hs *handshake

	// Owned by the worker that holds the read event.
	parser frame.Parser
}

// ID is unique per Server for the life of the process.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the client's address: the peer's, or the one a trusted
// proxy gave (Config.TrustedProxies).
func (c *Conn) RemoteAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slot.addr()
}

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

// SendPrepared queues messages serialized once for many receivers, in
// order and, up to the writev limit, with one write: another goroutine's
// frame for c cannot come between them. Each goes in the variant c
// negotiated (compressed or not).
func (c *Conn) SendPrepared(ps ...*frame.Prepared) error {
	if len(ps) == 1 {
		return c.write(c.frameBytes(ps[0]), false)
	}
	w := writers.Get().(*writer)
	defer writers.Put(w)
	defer c.srv.flushStats(w)
	for len(ps) > 0 {
		n := min(len(ps), iovMax)
		if err := c.writePrepared(w, ps[:n]); err != nil {
			return err
		}
		ps = ps[n:]
	}
	return nil
}

// DeferUntilAttached keeps f until c has its socket, the moment from which
// a Hub.Join delivers every broadcast to c, and reports true. A connection
// from Serve has its socket from the start, and one from Handler once its
// upgrade completes, after OnConnect: f then runs on the upgrading
// goroutine, before c's first message is read, with true; or with false if
// c closes first. DeferUntilAttached reports false, and never calls f, when
// c already has its socket or is closed: act at once.
func (c *Conn) DeferUntilAttached(f func(attached bool)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock.fd >= 0 || c.state == stateClosed || c.hs == nil {
		return false
	}
	c.hs.attached = append(c.hs.attached, f)
	return true
}

// runAttached runs the calls DeferUntilAttached kept.
func runAttached(fs []func(bool), attached bool) {
	for _, f := range fs {
		f(attached)
	}
}

// Compressed reports whether c negotiated permessage-deflate.
func (c *Conn) Compressed() bool { return c.zbits != 0 }

// Hubs lists the hubs c has joined and not left.
func (c *Conn) Hubs() []*Hub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.hubs)
}

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
// closing. With fin (protocol errors, policy, timeouts) the server shuts
// its side of the socket as soon as the frame is written and reads on,
// discarding, until the peer's close frame or EOF (drain); otherwise it
// waits for the peer's close frame. Either way Config.CloseTimeout bounds
// the wait.
func (c *Conn) closeWith(code frame.CloseCode, text string, reason CloseReason, fin bool) error {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	c.state = stateClosing
	c.code, c.reason = code, reason
	c.deadline = c.srv.now() + int64(c.srv.cfg.CloseTimeout)
	c.then = closeWait
	if fin {
		c.then = closeShut
	}
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
		c.then = closeFin
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
	var attached []func(bool)
	failed := c.hs != nil && c.reason.failsHandshake()
	if c.hs != nil {
		attached, c.hs.attached = c.hs.attached, nil
	}
	code, why, connected, token, sl := c.code, c.reason, c.connected, c.token, c.slot.take()
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
		_ = s.poller.Deregister(token)
		for _, h := range hubs {
			h.remove(c)
		}
		s.conns[c.sock.fd].CompareAndSwap(c, nil)
		c.sock.close()
	}
	s.connClosed(c, code, why, connected, &sl)
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
func (h *pollHandler) Writable(poller.Event) {
	(*Conn)(h).srv.dispatchWrite((*Conn)(h))
	(*Conn)(h).srv.yieldToWorkers()
}

// timeNow is the clock behind Server.now, in nanoseconds.
func timeNow() int64 { return time.Now().UnixNano() }
