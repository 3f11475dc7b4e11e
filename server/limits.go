package server

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"golang.org/x/time/rate"
)

// connLimits are one connection's token buckets, allocated only when a
// per-connection rate is configured.
type connLimits struct {
	msgs, bytes *rate.Limiter
}

func (s *Server) newConnLimits() *connLimits {
	if s.cfg.MessageRate <= 0 && s.cfg.ByteRate <= 0 {
		return nil
	}
	l := &connLimits{}
	if s.cfg.MessageRate > 0 {
		l.msgs = rate.NewLimiter(rate.Limit(s.cfg.MessageRate), max(1, s.cfg.MessageBurst))
	}
	if s.cfg.ByteRate > 0 {
		l.bytes = rate.NewLimiter(rate.Limit(s.cfg.ByteRate), max(s.cfg.MaxMessageBytes, s.cfg.ByteBurst))
	}
	return l
}

// allow spends tokens for one message of n bytes. Only the connection's read
// worker calls it.
func (l *connLimits) allow(now time.Time, n int) bool {
	if l.msgs != nil && !l.msgs.AllowN(now, 1) {
		return false
	}
	return l.bytes == nil || l.bytes.AllowN(now, n)
}

// rateLimited handles a message over the connection's rate: dropped and
// counted, or the connection closed with 1008 (Config.RateLimitClose).
// It returns false when c is being closed.
func (c *Conn) rateLimited() bool {
	s := c.srv
	s.stats.rateLimited.Add(1)
	if !s.cfg.RateLimitClose {
		return true
	}
	s.warnSampled("rate limit exceeded; closing", "conn", c.id, "remote", c.remote.String())
	_ = c.closeWith(frame.ClosePolicyViolation, "rate limit exceeded", ReasonRateLimited, true)
	return false
}

// ipLimits tracks connections and handshake rate per source address.
type ipLimits struct {
	mu    sync.Mutex
	peers map[netip.Addr]*ipState
}

type ipState struct {
	conns      int
	handshakes *rate.Limiter
}

// admit counts a new connection from ip, or returns the HTTP status that
// refuses it (429). Every admitted connection must be released once.
func (s *Server) admit(ip netip.Addr) int {
	if s.cfg.MaxConnsPerIP <= 0 && s.cfg.HandshakeRatePerIP <= 0 {
		return 0
	}
	l := &s.ipLimits
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers == nil {
		l.peers = make(map[netip.Addr]*ipState)
	}
	st := l.peers[ip]
	if st == nil {
		st = &ipState{}
		if s.cfg.HandshakeRatePerIP > 0 {
			st.handshakes = rate.NewLimiter(rate.Limit(s.cfg.HandshakeRatePerIP), max(1, int(s.cfg.HandshakeRatePerIP)))
		}
		l.peers[ip] = st
	}
	if s.cfg.MaxConnsPerIP > 0 && st.conns >= s.cfg.MaxConnsPerIP {
		return http.StatusTooManyRequests
	}
	if st.handshakes != nil && !st.handshakes.Allow() {
		return http.StatusTooManyRequests
	}
	st.conns++
	return 0
}

// release forgets one admitted connection from ip; an address with none
// left and a full bucket is dropped from the map (the sweeper drops the
// rest later).
func (s *Server) release(ip netip.Addr) {
	if s.cfg.MaxConnsPerIP <= 0 && s.cfg.HandshakeRatePerIP <= 0 {
		return
	}
	l := &s.ipLimits
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.peers[ip]; st != nil {
		st.conns--
		if st.conns <= 0 && (st.handshakes == nil || st.handshakes.Tokens() >= float64(st.handshakes.Burst())) {
			delete(l.peers, ip)
		}
	}
}

// sweepIPs drops addresses with no connection and a full handshake bucket,
// so the map holds only addresses with something to remember.
func (s *Server) sweepIPs() {
	l := &s.ipLimits
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, st := range l.peers {
		if st.conns <= 0 && (st.handshakes == nil || st.handshakes.Tokens() >= float64(st.handshakes.Burst())) {
			delete(l.peers, ip)
		}
	}
}
