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
// per-connection rate is configured. Only the connection's read worker
// uses them.
type connLimits struct {
	frames, bytes *bucket
	charged       uint64 // parser frames already charged
	over          bool   // a frame of the open data message was over the rate: drop it
}

// parserReset forgets the frames charged: the parser they were counted on
// was reset. l may be nil.
func (l *connLimits) parserReset() {
	if l != nil {
		l.charged = 0
	}
}

func (s *Server) newConnLimits() *connLimits {
	if s.cfg.MessageRate <= 0 && s.cfg.ByteRate <= 0 {
		return nil
	}
	l := &connLimits{}
	if s.cfg.MessageRate > 0 {
		l.frames = newBucket(s.cfg.MessageRate, max(1, s.cfg.MessageBurst))
	}
	if s.cfg.ByteRate > 0 {
		l.bytes = newBucket(s.cfg.ByteRate, max(s.cfg.MaxMessageBytes, s.cfg.ByteBurst))
	}
	return l
}

// allow charges what p parsed since the last call, m being what that Parse
// returned: one MessageRate token per frame (fragments and control frames
// included) and m's payload in ByteRate tokens. It reports whether m may be
// acted on; for a data message still in fragments (m.Op 0) it reports
// whether those fragments were within the rate, and a message with a
// fragment over it is refused when it completes.
func (l *connLimits) allow(now time.Time, p *frame.Parser, m frame.Message) bool {
	n := p.Frames() - l.charged
	l.charged = p.Frames()
	ok := n == 0 || l.frames == nil || l.frames.spend(now, float64(n))
	if ok && len(m.Payload) > 0 && l.bytes != nil {
		ok = l.bytes.spend(now, float64(len(m.Payload)))
	}
	switch m.Op {
	case frame.OpContinuation:
		l.over = l.over || !ok
	case frame.OpText, frame.OpBinary:
		ok = ok && !l.over
		l.over = false
	}
	return ok
}

// chargeInflated charges the n bytes a message gained when inflated, after
// allow let its compressed bytes through: the message is delivered, and
// the debt refuses the next ones, uninflated, until it is earned back.
func (l *connLimits) chargeInflated(now time.Time, n int) {
	if n > 0 && l.bytes != nil {
		l.bytes.charge(now, float64(n))
	}
}

// bucket is a token bucket that may go into debt: a charge of n is let
// through when the bucket holds min(n, burst) tokens and then costs all n,
// so a message of more frames than the burst still passes at the rate but
// pays for every frame, and a flood leaves its sender in debt for as long
// as it would take to earn what it sent.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *bucket) spend(now time.Time, n float64) bool {
	b.refill(now)
	if b.tokens < min(n, b.burst) {
		return false
	}
	b.tokens -= n
	return true
}

// charge takes n tokens, into debt if need be.
func (b *bucket) charge(now time.Time, n float64) {
	b.refill(now)
	b.tokens -= n
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// rateLimited handles a frame over the connection's rate: dropped and
// counted, or the connection closed with 1008 (Config.RateLimitClose).
// It returns false when c is being closed.
func (c *Conn) rateLimited() bool {
	s := c.srv
	s.stats.rateLimited.Add(1)
	if !s.cfg.RateLimitClose {
		return true
	}
	s.warnSampled("rate limit exceeded; closing", "conn", c.id, "remote", c.slot.addr().String())
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

// ipKey is what the per-IP limits count ip as: an IPv4 address (mapped or
// not) is itself, an IPv6 address its Config.IPv6PrefixBits prefix.
func (s *Server) ipKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip
	}
	p, _ := ip.WithZone("").Prefix(s.cfg.IPv6PrefixBits) // bits are validated: 1 to 128
	return p.Addr()
}

// ipAdmit counts a new connection from ip, or returns the HTTP status that
// refuses it (429). Every admitted connection must be released once.
func (s *Server) ipAdmit(ip netip.Addr) int {
	if s.cfg.MaxConnsPerIP <= 0 && s.cfg.HandshakeRatePerIP <= 0 {
		return 0
	}
	ip = s.ipKey(ip)
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

// ipRelease forgets one admitted connection from ip; an address with none
// left and a full bucket is dropped from the map (the sweeper drops the
// rest later).
func (s *Server) ipRelease(ip netip.Addr) {
	if s.cfg.MaxConnsPerIP <= 0 && s.cfg.HandshakeRatePerIP <= 0 {
		return
	}
	ip = s.ipKey(ip)
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
