package server

import (
	"context"
	"fmt"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// drainTick is the interval between two batches of a paced drain: small
// batches, so the nodes that take the clients see a steady trickle.
const drainTick = 100 * time.Millisecond

// DrainRetryHint is the reconnect window a paced drain names in its close
// reason ("retry-ms=1000"): a client waits a random delay up to it, which
// spreads each batch's reconnects over ten batches' time.
const DrainRetryHint = time.Second

// drainReason is the close reason of a paced drain, with its reconnect hint.
var drainReason = fmt.Sprintf("server restart; retry-ms=%d", DrainRetryHint.Milliseconds())

// Drain takes the server out of rotation and moves its clients away
// gently, for rolling restarts without reconnect storms. At once Accepting
// reports false, so a readiness probe answers 503 and load balancers stop
// sending clients here; the listeners keep accepting for grace, so that
// nothing is refused before they notice, then close. Then the open
// connections are closed in small batches (one every 100 ms) spread evenly
// over spread, each after the broadcasts pending for it, with 1012
// (Service Restart) and the reason "server restart; retry-ms=1000"
// (DrainRetryHint), which well-behaved clients take as the window of their
// random reconnect delay. Connections that open meanwhile (handshakes in
// flight at the close of the listeners) join the later batches.
//
// Drain returns nil once no WebSocket connection is left open, or
// ctx.Err() as soon as ctx is done. Either way call Shutdown next: it
// waits for the close handshakes under way and the plain HTTP requests in
// flight, closes what is left at once with 1001 and releases the server. Drain returns nil at once if a
// drain or a shutdown has already begun.
func (s *Server) Drain(ctx context.Context, grace, spread time.Duration) error {
	if s.shutting.Load() || !s.draining.CompareAndSwap(false, true) {
		return nil
	}
	s.log.Info("drain begun: not ready, still accepting", "live", s.live.Load(), "grace", grace, "spread", spread)
	select {
	case <-time.After(grace):
	case <-ctx.Done():
		return ctx.Err()
	}
	s.closeListeners()
	if s.poller == nil {
		return nil
	}
	s.log.Info("drain: listeners closed, closing connections", "live", s.live.Load(), "spread", spread)
	end := time.Now().Add(spread)
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for {
		ticksLeft := max(1, int((time.Until(end)+drainTick-1)/drainTick))
		if s.closeBatch(ticksLeft) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.log.Info("drain finished")
	return nil
}

// closeBatch closes its share of the open connections when ticksLeft
// batches remain: their hubs' pending broadcasts are flushed first, so the
// close frame follows every message the client is owed. It returns how
// many were open.
func (s *Server) closeBatch(ticksLeft int) (open int) {
	s.eachConn(func(c *Conn) {
		if c.isOpen() {
			open++
		}
	})
	if open == 0 {
		return 0
	}
	batch := make([]*Conn, 0, (open+ticksLeft-1)/ticksLeft)
	hubs := map[*Hub]struct{}{}
	for i := 0; i < len(s.conns) && len(batch) < cap(batch); i++ {
		if c := s.conns[i].Load(); c != nil && c.isOpen() {
			batch = append(batch, c)
			for _, h := range c.Hubs() {
				hubs[h] = struct{}{}
			}
		}
	}
	for h := range hubs { // only the batch's: a node may hold many hubs
		h.drain()
	}
	for _, c := range batch {
		_ = c.closeWith(frame.CloseServiceRestart, drainReason, ReasonServerShutdown, false)
	}
	return open
}
