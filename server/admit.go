package server

import (
	"errors"
	"net/http"
	"net/netip"
)

// Admission is one path for every kind of connection (Serve, TLS, Handler):
// the capacity and per-IP limits decide at accept (admitAtAccept, or
// admitClient for a trusted proxy's client), and a refusal is answered,
// counted and logged by refuse.

// admitAtAccept decides what the capacity and per-IP limits allow a new
// connection; c already counts in live. A refused connection's request is
// still read (so closing sends FIN, not RST) and answered with the status
// (refuse); the fd reserve covers these. A trusted proxy's connection
// waits for its client's address (admitClient).
func (s *Server) admitAtAccept(c *Conn) {
	c.viaProxy = s.trusted(c.remote.Addr())
	s.admitConn(c, c.viaProxy)
}

// admitConn checks capacity and, unless perIPLater, the per-IP limits,
// leaving the refusal's status in c.refuse.
func (s *Server) admitConn(c *Conn, perIPLater bool) {
	switch {
	case s.live.Load() > int64(s.ceiling):
		c.refuse = http.StatusServiceUnavailable
	case perIPLater:
	default:
		c.refuse = s.admit(c.remote.Addr())
		c.admitted = c.refuse == 0
	}
}

// refusal counts and logs a connection refused by admitAtAccept's status,
// and returns what to answer and why it closes.
func (s *Server) refusal(status int, remote netip.AddrPort) (text string, reason CloseReason, err error) {
	if status == http.StatusServiceUnavailable {
		s.stats.rejectedCapacity.Add(1)
		s.warnSampled("over capacity; answered 503", "remote", remote.String(), "max_conns", s.ceiling)
		return "too many connections", ReasonOverCapacity, errors.New("over capacity")
	}
	s.stats.rejectedIP.Add(1)
	s.warnSampled("per-IP limit; answered 429", "remote", remote.String())
	return "too many connections or handshakes from this address", ReasonHandshakeFailed, errors.New("per-IP limit")
}

// rejection is the HTTP status and text for an error from onConnect: a
// RejectError's own, or 403.
func rejection(err error) (status int, reason string) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Status, re.Reason
	}
	return http.StatusForbidden, "forbidden"
}
