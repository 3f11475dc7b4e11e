package server

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/fanout-ws/fanout/poller"
	"golang.org/x/sys/unix"
)

// Admission. Every connection passes here, whichever way it came: Serve's
// listener (plain or TLS), a trusted proxy (PROXY header or forwarding
// header) or Handler. At the door it takes a place in the live count
// (MaxConns, capped by the open-files limit) and, once its client's address
// is known, a place in that address's per-IP count; over either it is
// refused with 503 or 429. What it took is its slot: the slot travels with
// the connection (Conn, then plainConn after a hand-off to HTTPHandler) and
// is given back once, when it closes.
//
// The client's address is known at accept for a peer that is not a trusted
// proxy; after the PROXY header for a trusted proxy's connection, which
// then belongs to that one client, plain HTTP requests included; and after
// the request head for an upgrade whose client a trusted proxy names in a
// forwarding header. A plain request with only a forwarding header is not
// admitted per IP: a proxy's keep-alive connection carries requests of
// many clients.
//
// A refused connection is answered at once, without waiting for its
// request, and takes no place in MaxConns. The server then shuts its side
// (FIN) and discards what the client still sends for at most refuseLinger,
// so that closing does not reset the socket while the answer is in flight.
// At most maxRefusing refused sockets linger at a time: past that a refused
// socket is answered and closed at once, so refusals can never use up the
// fd reserve.
const (
	refuseLinger = 2 * time.Second
	maxRefusing  = fdReserve / 2
)

// bridgeFDs is what a Handler connection behind HTTPS holds beyond its own
// socket: the two ends of its socket pair (bridge.go).
const bridgeFDs = 2

// What a slot holds.
const (
	slotLive    = 1 << iota // a place in Server.live
	slotIP                  // a place in the per-IP count of the slot's address
	slotRefused             // a refused socket lingering: a place in Server.refusing
	slotBridged             // bridgeFDs more sockets, in Server.bridged
)

// slot is who a connection is (the client's address: the peer's, or the
// one a trusted proxy gave) and what it holds of the server's limits. Its
// owner serializes the calls on it (Conn under Conn.mu, plainConn once).
// The address is kept as 16 bytes (IPv4 mapped, no zone): an idle Conn is
// smaller by 8 bytes than with a netip.Addr.
type slot struct {
	ip   [16]byte
	port uint16
	held uint8
}

func slotFor(a netip.AddrPort) slot { return slot{ip: a.Addr().As16(), port: a.Port()} }

func (sl *slot) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(sl.ip).Unmap(), sl.port)
}

// take moves what sl holds to the caller: sl is left holding nothing.
func (sl *slot) take() slot {
	t := *sl
	sl.held = 0
	return t
}

// admit decides on a new connection from sl's address: 503 over the
// ceiling, 429 over a per-IP limit, else 0 with the places taken in sl.
// Without perIP (a trusted proxy's connection) the per-IP limits wait for
// the client's address (admitIP). bridged counts a Handler connection
// behind HTTPS as the three sockets it holds. A refusal takes nothing.
func (s *Server) admit(sl *slot, perIP, bridged bool) int {
	s.stats.accepted.Add(1)
	if s.handshakes != nil && !s.handshakes.Allow() {
		s.stats.rejectedRate.Add(1)
		s.warnSampled("over the handshake rate; answered 503", "remote", sl.addr().String(), "max_handshake_rate", s.cfg.MaxHandshakeRate)
		s.handshakeFailed()
		return http.StatusServiceUnavailable
	}
	extra := int64(0)
	if bridged {
		extra = bridgeFDs
	}
	live := s.live.Load()
	if live >= int64(s.ceiling) || live+bridgeFDs*s.bridged.Load()+extra >= int64(s.fdLimit-fdReserve) {
		return s.refusal(http.StatusServiceUnavailable, sl.addr())
	}
	if perIP {
		if status := s.admitIP(sl); status != 0 {
			return status
		}
	}
	s.live.Add(1)
	sl.held |= slotLive
	if bridged {
		s.bridged.Add(1)
		sl.held |= slotBridged
	}
	return 0
}

// admitIP takes a place in the per-IP count of sl's address, or returns
// 429.
func (s *Server) admitIP(sl *slot) int {
	if status := s.ipAdmit(sl.addr().Addr()); status != 0 {
		return s.refusal(status, sl.addr())
	}
	sl.held |= slotIP
	return 0
}

// releaseSlot gives back what sl holds; a second call finds nothing.
func (s *Server) releaseSlot(sl *slot) {
	held := sl.held
	sl.held = 0
	if held&slotIP != 0 {
		s.ipRelease(sl.addr().Addr())
	}
	if held&slotBridged != 0 {
		s.bridged.Add(-1)
	}
	if held&slotRefused != 0 {
		s.refusing.Add(-1)
	}
	if held&slotLive != 0 && s.live.Add(-1) == 0 && s.shutting.Load() {
		s.signalIdle()
	}
}

// admitClient records the client a trusted proxy named for c and admits it
// per IP, unless that address is itself a trusted proxy's. It returns 0
// or the status that refuses the client.
func (c *Conn) admitClient(client netip.AddrPort) int {
	s := c.srv
	sl := slotFor(client)
	c.mu.Lock()
	c.slot.ip, c.slot.port = sl.ip, sl.port
	c.mu.Unlock()
	if s.trusted(client.Addr()) {
		return 0
	}
	if status := s.admitIP(&sl); status != 0 {
		return status
	}
	c.mu.Lock()
	closed := c.life.current() == stateClosed
	if !closed {
		c.slot.held |= sl.held
	}
	c.mu.Unlock()
	if closed {
		s.releaseSlot(&sl)
	}
	return 0
}

// refusal counts and logs a connection refused with status by admission,
// a failed handshake too, and returns status.
func (s *Server) refusal(status int, remote netip.AddrPort) int {
	if status == http.StatusServiceUnavailable {
		s.stats.rejectedCapacity.Add(1)
		s.warnSampled("over capacity; answered 503", "remote", remote.String(), "max_conns", s.ceiling)
	} else {
		s.stats.rejectedIP.Add(1)
		s.warnSampled("per-IP limit; answered 429", "remote", remote.String())
	}
	s.handshakeFailed()
	return status
}

// refusalText is the body of an admission refusal's answer.
func refusalText(status int) string {
	if status == http.StatusServiceUnavailable {
		return "too many connections, or new ones too fast"
	}
	return "too many connections or handshakes from this address"
}

// refusalAnswer is the raw HTTP answer to an admission refusal. A 503
// (over MaxConns or MaxHandshakeRate) asks the client to come back after
// retryAfter seconds.
func (s *Server) refusalAnswer(status int) []byte {
	if status == http.StatusServiceUnavailable {
		return httpError(status, refusalText(status), "Retry-After: "+strconv.Itoa(s.retryAfter()))
	}
	return httpError(status, refusalText(status))
}

// retryAfter is the Retry-After of a 503: 1 s, or while MaxHandshakeRate
// refuses, the place a refused client books in its queue (pace.Limiter).
func (s *Server) retryAfter() int {
	if s.handshakes == nil {
		return 1
	}
	return s.handshakes.RetryAfter(time.Now())
}

// handshakeFailed is the one place a failed handshake is counted: by
// refusal for an admission refusal, and by Conn.destroy for a connection
// that ends in its handshake for a reason failsHandshake names.
func (s *Server) handshakeFailed() { s.stats.handshakesFailed.Add(1) }

// accept adopts a socket from Serve's listener: admission, then the
// poller, or for TLS a handshake goroutine.
func (s *Server) accept(nc net.Conn) {
	peer := addrPort(nc.RemoteAddr())
	viaProxy := s.trusted(peer.Addr())
	sl := slotFor(peer)
	status := s.admit(&sl, !viaProxy, false)
	switch {
	case s.cfg.TLS != nil:
		s.wg.Add(1)
		go s.acceptTLS(nc, sl, viaProxy, status)
	case status != 0:
		s.refuse(nc, sl, status)
	default:
		fd, err := poller.Detach(nc)
		if err != nil {
			s.releaseSlot(&sl)
			s.warnSampled("accept: cannot take socket", "err", err)
			return
		}
		c := s.newConn(fd, sl)
		c.startHandshake(viaProxy)
		if err := s.register(c); err != nil {
			s.log.Error("register", "err", err)
			c.destroy(ReasonIOError)
		}
	}
}

// refuse answers a refused plain socket at once, half-closes it and lets it
// linger on the poller, in the closing state, until the client closes or
// refuseLinger passes.
func (s *Server) refuse(nc net.Conn, sl slot, status int) {
	resp := s.refusalAnswer(status)
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		_, _ = nc.Write(resp) // a fresh socket's send buffer takes it whole
		nc.Close()
		return
	}
	sl.held = slotRefused
	fd, err := poller.Detach(nc)
	if err != nil {
		s.releaseSlot(&sl)
		return
	}
	c := s.newConn(fd, sl)
	reason := ReasonOverCapacity
	if status != http.StatusServiceUnavailable {
		reason = ReasonRateLimited
	}
	c.life.refused(reason, s.now()+int64(refuseLinger))
	c.sendNow(resp)
	_ = unix.Shutdown(fd, unix.SHUT_WR)
	if err := s.register(c); err != nil {
		c.destroy(ReasonIOError)
	}
}

// refuseTLS answers a refused TLS socket on its accept goroutine: the
// answer needs a TLS handshake, so the whole exchange is bounded by
// refuseLinger, and past maxRefusing the socket is closed without one.
func (s *Server) refuseTLS(nc net.Conn, status int) {
	defer nc.Close()
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		return
	}
	defer s.refusing.Add(-1)
	_ = nc.SetDeadline(time.Now().Add(refuseLinger))
	tc := tls.Server(nc, s.cfg.TLS)
	if tc.Handshake() != nil {
		return
	}
	if _, err := tc.Write(s.refusalAnswer(status)); err != nil {
		return
	}
	_ = tc.CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, int64(s.cfg.MaxRequestBytes)))
}
