package server

// A Conn is carved into parts, each with its owner files; other files use a
// part only through its methods (nats-server's outbound and readCache, nbio's
// two Conn layers). newConn, the constructor, is the one exception: the Conn
// is not shared yet. To check: grep 'c\.<part>\.[a-z]*\b[^(]'.
//
//	part            type       owner files                    guarded by
//	srv, id, sock   -          newConn; sock_linux.go, tls.go set before c is shared (sock.gen: Conn.mu)
//	rd              reader     read.go                        the read event's holder (rd.reading)
//	out             sendQueue  write.go                       Conn.mu; the socket by out.writing
//	life            lifecycle  close.go, timers.go            Conn.mu
//	app             appState   conn.go, auth.go (claims)      Conn.mu
//	slot            slot       admission.go                   Conn.mu
//	hs              *handshake upgrade.go, proxy.go, tls.go   its goroutine; nil from the 101 on
//	neg             negotiated upgrade.go, deflate.go         set before the 101, then read-only
//
// Lock order, for every lock in the package: take them left to right, never
// back. Server.mu → Hub.shardMu → hub shard mu → Conn.mu → tlsRaw.mu.
// Hub.pauseMu, flushQueue.mu and ipLimits.mu are leaves: nothing else is
// taken while one is held. A hub shard's flush takes each member's Conn.mu
// with no shard lock held. No lock is held during a read or write: a writer
// takes ownership of the socket (out.writing) under Conn.mu, then writes
// unlocked. The one syscall made under Conn.mu is the epoll_ctl that
// registers the fd (Server.arm).

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/poller"
)

// Conn is one WebSocket connection. Its methods are safe for concurrent use.
// A Conn owns no goroutine, and no buffer while idle.
type Conn struct {
	rd   reader // atomics first
	sock sock
	srv  *Server
	id   uint64
	mu   sync.Mutex
	out  sendQueue
	life lifecycle
	app  appState
	hs   *handshake
	slot slot // the client's address and its places in the limits
	neg  negotiated
}

// appState is what the application and the hubs attached to a Conn, under
// Conn.mu.
type appState struct {
	hubs   []*Hub
	data   any
	claims map[string]any // the verified token's, nil for an anonymous connection
}

// negotiated is what the handshake agreed with the client.
type negotiated struct {
	proto uint8 // the subprotocol: 1 + its index in Config.Subprotocols, or 0 for none
	zbits uint8 // permessage-deflate window the client allowed, in bits (0: none)
}

// newConn makes the Conn for fd, holding sl, in its handshake state
// (Conn.startHandshake gives it the handshake part). It is the one place
// outside their owners that sets parts: c is not shared yet.
func (s *Server) newConn(fd int, sl slot) *Conn {
	c := &Conn{srv: s, id: s.nextID.Add(1), slot: sl}
	c.sock.fd = int32(fd)
	c.out.writing = true // the handshake's goroutine owns the socket until the 101
	c.life.setDeadline(s.now() + int64(s.cfg.HandshakeTimeout))
	c.rd.lastRead.Store(s.now())
	c.rd.limits = s.newConnLimits()
	return c
}

// joined returns a copy of the hubs c joined; the caller holds Conn.mu.
func (a *appState) joined() []*Hub { return slices.Clone(a.hubs) }

// join adds h to the hubs c joined and reports whether it is new there;
// the caller holds Conn.mu.
func (a *appState) join(h *Hub) bool {
	if slices.Contains(a.hubs, h) {
		return false
	}
	a.hubs = append(a.hubs, h)
	return true
}

// leave removes h from the hubs c joined and reports whether it was there;
// the caller holds Conn.mu.
func (a *appState) leave(h *Hub) bool {
	i := slices.Index(a.hubs, h)
	if i < 0 {
		return false
	}
	a.hubs = slices.Delete(a.hubs, i, i+1)
	return true
}

// behind returns a hub of c's that is behind, or nil; the caller holds
// Conn.mu.
func (a *appState) behind() *Hub {
	for _, h := range a.hubs {
		if h.behind.Load() > 0 {
			return h
		}
	}
	return nil
}

// takeHubs returns the hubs c joined and forgets them; the caller holds
// Conn.mu.
func (a *appState) takeHubs() []*Hub {
	hubs := a.hubs
	a.hubs = nil
	return hubs
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

// Data returns what SetData stored.
func (c *Conn) Data() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.app.data
}

// SetData attaches application data to c.
func (c *Conn) SetData(v any) {
	c.mu.Lock()
	c.app.data = v
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
// order and, up to IOV_MAX of them, with one write: another goroutine's
// frame for c cannot come between them. Each goes in the variant c
// negotiated (compressed or not).
func (c *Conn) SendPrepared(ps ...*frame.Prepared) error {
	if len(ps) == 1 {
		return c.write(c.frameBytes(ps[0]), notClose)
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

// Hubs lists the hubs c has joined and not left.
func (c *Conn) Hubs() []*Hub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.app.joined()
}

// tok returns c's poller registration.
func (c *Conn) tok() poller.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sock.token()
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
