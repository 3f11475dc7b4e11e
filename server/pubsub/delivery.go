package pubsub

import (
	"context"
	"time"
)

// Delivery: the broker hands every channel message to Node.deliver, which
// broadcasts it on the channel's hub, catching up from history first when
// the offsets show a hole (recovery.go says what cannot be recovered).

// brokerTimeout bounds one broker call made on a worker.
const brokerTimeout = 2 * time.Second

// deliver hands a broker message to this node's subscribers of its
// channel, or a note to the node bus. It runs on the broker's delivery goroutine, in order per
// channel; a hole in the offsets (messages missed while the broker
// reconnected) is filled from history first.
func (n *Node) deliver(m Message) {
	if m.Channel == busChannel {
		n.bus.deliver(m.Data)
		return
	}
	n.chans.mu.RLock()
	ch := n.chans.m[m.Channel]
	n.chans.mu.RUnlock()
	if ch == nil {
		n.stats.unwanted.Add(1) // no subscriber here: ~0 with a Router broker
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead {
		return
	}
	if m.Offset == 0 { // injected from outside: no place in the stream
		ch.hub.BroadcastPrepared(messageFrame(m))
		return
	}
	if m.Epoch != ch.epoch || m.Offset > ch.offset+1 {
		n.catchUp(ch, m.Position)
	}
	if m.Epoch != ch.epoch || m.Offset <= ch.offset {
		return // delivered already, by the catch-up
	}
	ch.hub.BroadcastPrepared(messageFrame(m))
	ch.offset = m.Offset
}

// catchUp delivers from the broker's history what ch's subscribers missed
// before upTo (the broker's latest position when upTo is zero), and tells
// them with a gap notice what history cannot give back, or that the
// channel's epoch changed. ch.mu is held.
func (n *Node) catchUp(ch *channel, upTo Position) {
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	b := n.broker
	limit := max(n.cfg.HistorySize, 0)
	top, msgs, err := b.History(ctx, ch.name, ch.offset, limit)
	newEpoch := err == nil && top.Epoch != ch.epoch
	if newEpoch { // offsets restarted: all of the new epoch is news
		top, msgs, err = b.History(ctx, ch.name, 0, limit)
	}
	if err != nil {
		n.log.Warn("broker history unavailable; subscribers may miss messages", "channel", ch.name, "err", err)
		ch.hub.BroadcastPrepared(gapFrame(ch.name, ch.offset, nil, "", gapUnavailable))
		if upTo.Epoch != "" {
			ch.epoch, ch.offset = upTo.Epoch, upTo.Offset-1
		}
		return
	}
	if upTo.Offset == 0 || upTo.Epoch != top.Epoch {
		upTo = top
	} else {
		upTo.Offset-- // upTo itself is delivered by the caller
	}
	first := upTo.Offset + 1 // the oldest offset subscribers get from here
	if len(msgs) > 0 {
		first = msgs[0].Offset
	}
	if ch.epoch != "" { // subscribers have had everything up to ch.offset
		if reason, epoch := gapFor(Position{Offset: ch.offset, Epoch: ch.epoch}, top, first); reason != "" {
			ch.hub.BroadcastPrepared(gapFrame(ch.name, ch.offset, &first, epoch, reason))
		}
	}
	if newEpoch {
		ch.epoch, ch.offset = top.Epoch, 0
	}
	for _, m := range msgs {
		if m.Offset > upTo.Offset {
			break
		}
		ch.hub.BroadcastPrepared(messageFrame(m))
		ch.offset = m.Offset
	}
	ch.offset = max(ch.offset, upTo.Offset)
}

// resync catches every channel with subscribers up after the broker
// reconnected.
func (n *Node) resync() {
	n.presence.resync()
	n.chans.mu.RLock()
	list := make([]*channel, 0, len(n.chans.m))
	for _, ch := range n.chans.m {
		list = append(list, ch)
	}
	n.chans.mu.RUnlock()
	for _, ch := range list {
		ch.mu.Lock()
		if !ch.dead && ch.epoch != "" {
			n.catchUp(ch, Position{})
		}
		ch.mu.Unlock()
	}
}
