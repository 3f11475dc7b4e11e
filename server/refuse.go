package server

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/fanout-ws/fanout/poller"
	"golang.org/x/sys/unix"
)

// A connection over MaxConns (503) or a per-IP limit (429) is answered as
// soon as it is accepted, without waiting for its request, and it does not
// count against MaxConns. The server then shuts its side (FIN) and discards
// what the client still sends for at most refuseLinger, so that closing
// does not reset the socket while the answer is in flight. At most
// maxRefusing refused sockets linger at a time: past that a refused socket
// is answered and closed at once, so refusals can never use up the fd
// reserve.
const (
	refuseLinger = 2 * time.Second
	maxRefusing  = fdReserve / 2
)

// admission decides on a new connection from ip: 0 admits it (counted by
// the per-IP limits unless ip is a trusted proxy, whose client is admitted
// once its address is known: admitClient), otherwise it returns the HTTP
// status that refuses it.
func (s *Server) admission(ip netip.Addr, viaProxy bool) int {
	if s.live.Load() >= int64(s.ceiling) {
		return http.StatusServiceUnavailable
	}
	if viaProxy {
		return 0
	}
	return s.admit(ip)
}

// refusal counts and logs a connection refused with status (by admission)
// and returns the text of its answer.
func (s *Server) refusal(status int, remote netip.AddrPort) string {
	if status == http.StatusServiceUnavailable {
		s.stats.rejectedCapacity.Add(1)
		s.warnSampled("over capacity; answered 503", "remote", remote.String(), "max_conns", s.ceiling)
		return "too many connections"
	}
	s.stats.rejectedIP.Add(1)
	s.warnSampled("per-IP limit; answered 429", "remote", remote.String())
	return "too many connections or handshakes from this address"
}

// refuse answers a refused plain socket at once, half-closes it and lets it
// linger on the poller, in the closing state, until the client closes or
// refuseLinger passes.
func (s *Server) refuse(nc net.Conn, remote netip.AddrPort, status int) {
	s.stats.handshakesFailed.Add(1)
	resp := httpError(status, s.refusal(status, remote))
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		_, _ = nc.Write(resp) // a fresh socket's send buffer takes it whole
		nc.Close()
		return
	}
	fd, err := poller.Detach(nc)
	if err != nil {
		s.refusing.Add(-1)
		return
	}
	c := s.newConn(fd, remote, true)
	c.state = stateClosing
	c.reason = ReasonOverCapacity
	if status != http.StatusServiceUnavailable {
		c.reason = ReasonRateLimited
	}
	c.deadline = s.now() + int64(refuseLinger)
	w := writers.Get().(*writer)
	w.one[0] = resp
	_, _ = c.sock.send(w.iov, w.one[:])
	w.one[0] = nil
	writers.Put(w)
	_ = unix.Shutdown(fd, unix.SHUT_WR)
	if err := s.register(c); err != nil {
		c.destroy(ReasonIOError)
	}
}

// refuseTLS answers a refused TLS socket on the accept goroutine: the
// answer needs a TLS handshake, so the whole exchange is bounded by
// refuseLinger, and past maxRefusing the socket is closed without one.
func (s *Server) refuseTLS(nc net.Conn, remote netip.AddrPort, status int) {
	defer nc.Close()
	s.stats.handshakesFailed.Add(1)
	resp := httpError(status, s.refusal(status, remote))
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
	if _, err := tc.Write(resp); err != nil {
		return
	}
	_ = tc.CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, int64(s.cfg.MaxRequestBytes)))
}
