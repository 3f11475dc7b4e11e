package server

import (
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// sweep is the one shared timer: each tick it advances the coarse clock and
// walks the fd table for handshake, close and idle deadlines and due pings.
// No connection owns a time.Timer or a goroutine.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := timeNow()
		s.clock.Store(now)
		s.sweepIPs()
		for i := range s.conns {
			if c := s.conns[i].Load(); c != nil {
				s.checkTimers(c, now)
			}
		}
		s.metrics.sweep.Observe(time.Duration(timeNow() - now).Seconds())
	}
}

// sweepInterval is a quarter of the shortest timeout, within [5ms, 1s].
func (s *Server) sweepInterval() time.Duration {
	d := time.Second
	for _, v := range []time.Duration{s.cfg.HandshakeTimeout, s.cfg.PingInterval, s.cfg.IdleTimeout, s.cfg.CloseTimeout} {
		if v > 0 {
			d = min(d, v/4)
		}
	}
	return max(d, 5*time.Millisecond)
}

func (s *Server) checkTimers(c *Conn, now int64) {
	c.mu.Lock()
	st, deadline, expires := c.life.state, c.life.deadline, c.life.expires
	warn := st == stateOpen && expires > 0 && !c.life.warned && s.cfg.OnExpiring != nil && now >= expires-int64(s.cfg.ExpiryWarning)
	if warn {
		c.life.warned = true
	}
	c.mu.Unlock()
	switch st {
	case stateHandshake:
		if deadline > 0 && now > deadline {
			c.destroy(ReasonHandshakeTimeout)
		}
	case stateClosing:
		if now > deadline {
			c.destroy(ReasonCloseTimeout)
		}
	case stateOpen:
		if c.sock.rec != nil {
			c.sock.rec.sweep()
		}
		idle := now - c.lastReadAt()
		switch {
		case expires > 0 && now >= expires:
			_ = c.closeWith(frame.ClosePolicyViolation, "token expired", ReasonTokenExpired, true)
		case warn:
			s.cfg.OnExpiring(c, time.Duration(expires-now))
		case s.cfg.IdleTimeout > 0 && idle > int64(s.cfg.IdleTimeout):
			_ = c.closeWith(1001, "idle timeout", ReasonIdleTimeout, true)
		case s.cfg.PingInterval > 0 && idle > int64(s.cfg.PingInterval) && now-deadline > int64(s.cfg.PingInterval): // deadline: the last ping
			c.mu.Lock()
			open := c.life.state == stateOpen // else deadline is the close handshake's now
			if open {
				c.life.deadline = now
			}
			c.mu.Unlock()
			if open {
				_ = c.write(s.ping, notClose)
			}
		}
	}
}
