package pubsub

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// Interest routing: with a Router broker, this node asks the broker for a
// channel's messages when the channel gets its first subscriber here and
// gives them up when the sweep forgets it, so a node hears only the
// channels it serves. The registry calls route and unroute under
// chans.mu, so the calls for one name alternate.
//
// A route takes effect at the broker a little later (Router.Route batches
// them). Until it does, the channel is not live: its subscribes wait, and
// run once the broker confirms the route (routed), off the read workers.
// Their History read then comes after the route took effect, so a message
// published meanwhile is in that history, in the deliveries that follow,
// or both: subscribers get it once (offsets already delivered are
// dropped), in order, and no burst published before the route can outrun
// the history.

// routeWait bounds how long a subscribe waits for its route (a broker that
// went away meanwhile) before it fails as broker unavailable.
const routeWait = 2 * brokerTimeout

// waitingJoin is a subscribe waiting for its channel's route.
type waitingJoin struct {
	c     *server.Conn
	since *Position
	id    json.RawMessage
	at    time.Time
	// replay: it waits for its turn of MaxReplayRate (pacing.go), not
	// for the route, and gets its turn from the node's replay queue.
	replay bool
}

// route asks a Router broker for ch's messages.
func (n *Node) route(ch *channel) {
	if r, ok := n.broker.(Router); ok {
		r.Route(ch.name, func() { n.routed(ch) })
	}
}

// unroute gives up name's messages.
func (n *Node) unroute(name string) {
	if r, ok := n.broker.(Router); ok {
		r.Unroute(name)
	}
}

// awaitRoute holds c's subscribe to ch until ch is live. ch.mu is held.
func (n *Node) awaitRoute(ch *channel, c *server.Conn, since *Position, id json.RawMessage) error {
	if !n.broker.Ready() {
		return ErrBrokerUnavailable
	}
	if len(ch.waiting) == 0 {
		// The first: the broker refuses it now if it must (a channel cap),
		// an HTTP status at connect rather than an error message later.
		ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		_, _, err := n.broker.History(ctx, ch.name, 0, 0)
		cancel()
		if err != nil {
			return brokerError(err)
		}
	}
	n.pending.add(c, 1) // one of c's channels, for MaxChannelsPerConn
	ch.waiting = append(ch.waiting, waitingJoin{c: c, since: since, id: id, at: time.Now()})
	return nil
}

// routed runs the subscribes waiting for ch, once the broker delivers it.
func (n *Node) routed(ch *channel) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead || ch.live {
		return
	}
	ch.live = true
	waiting := ch.waiting
	ch.waiting = nil // a join paced for MaxReplayRate waits here again
	for _, w := range waiting {
		n.pending.add(w.c, -1)
		if err := n.joinLocked(ch, w.c, w.since, w.id, false); err != nil {
			replySubscribeError(w.c, ch.name, w.id, err)
		}
	}
}

// stopAwaiting drops c's subscribe waiting for ch, if any: c unsubscribed.
func (n *Node) stopAwaiting(ch *channel, c *server.Conn) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.waiting = slices.DeleteFunc(ch.waiting, func(w waitingJoin) bool {
		if w.c == c {
			n.pending.add(c, -1)
		}
		return w.c == c
	})
}

// awaiting fails the subscribes that waited for ch's route longer than
// routeWait, and reports whether others still wait (for the route, or
// for a replay's turn, which maxReplayWait bounds). ch.mu is held.
func (n *Node) awaiting(ch *channel) bool {
	cutoff := time.Now().Add(-routeWait)
	ch.waiting = slices.DeleteFunc(ch.waiting, func(w waitingJoin) bool {
		if !w.replay && w.at.Before(cutoff) {
			n.pending.add(w.c, -1)
			replySubscribeError(w.c, ch.name, w.id, ErrBrokerUnavailable)
			return true
		}
		return false
	})
	return len(ch.waiting) > 0
}
