package pubsub

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// Paced replays: a subscribe with since beyond Config.MaxReplayRate is not
// refused while the node can serve it within maxReplayWait. It waits in its
// channel's waiting list, as a subscribe waits for its route, and one
// goroutine of the node runs the waiting replays in order, one per token
// of the rate, off the read workers. The client keeps its connection (at
// upgrade it gets its 101 now, its "subscribed" and replay at its turn),
// so a storm of resumes costs one handshake each instead of a refusal, a
// wait and a second handshake. Past maxReplayWait's worth of waiting
// replays a subscribe is refused with a place booked for its retry
// (replaysBusy).

// maxReplayWait bounds the wait of a paced replay: the queue holds this
// long's worth of replays at Config.MaxReplayRate.
const maxReplayWait = 10 * time.Second

// replayQueueLen is how many replays wait at most at perSecond.
func replayQueueLen(perSecond float64) int { return max(1, int(perSecond*maxReplayWait.Seconds())) }

// queueReplay makes c's subscribe to ch at since wait for its turn of
// MaxReplayRate, or refuses it when the queue is full. ch.mu is held and
// ch is live.
func (n *Node) queueReplay(ch *channel, c *server.Conn, since *Position, id json.RawMessage) error {
	select {
	case n.replayTurns <- ch:
	default:
		n.stats.replaysBusy.Add(1)
		return replaysBusy{after: n.replayed.RetryAfter(time.Now())}
	}
	n.stats.replaysPaced.Add(1)
	n.pending.add(c, 1) // one of c's channels, for MaxChannelsPerConn
	ch.waiting = append(ch.waiting, waitingJoin{c: c, since: since, id: id, at: time.Now(), replay: true})
	return nil
}

// runReplays gives the waiting replays their turns, in order, at
// MaxReplayRate, until ctx is done.
func (n *Node) runReplays(ctx context.Context) {
	for {
		var ch *channel
		select {
		case <-ctx.Done():
			return
		case ch = <-n.replayTurns:
		}
		if n.replayed.Wait(ctx) != nil {
			return
		}
		n.replayTurn(ch)
	}
}

// replayTurn joins the first replay waiting for ch; none when its client
// unsubscribed meanwhile (the token goes unused).
func (n *Node) replayTurn(ch *channel) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	i := slices.IndexFunc(ch.waiting, func(w waitingJoin) bool { return w.replay })
	if i < 0 {
		return
	}
	w := ch.waiting[i]
	ch.waiting = slices.Delete(ch.waiting, i, i+1)
	n.pending.add(w.c, -1)
	if err := n.joinLocked(ch, w.c, w.since, w.id, true); err != nil {
		replySubscribeError(w.c, ch.name, w.id, err)
	}
}
