package pubsub

import (
	"context"
	"errors"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// Broker gives each channel message its offset, keeps channel history
// where every node can read it, and delivers every message to every node.
// MemoryBroker (the default) keeps all of it in one process; the Redis
// broker (package pubsub/redis) joins several processes.
//
// What a Node relies on, for an implementation to provide:
//   - Offsets count from 1 per channel, without gaps, in one order that
//     every node sees; Start delivers each channel's messages in that order.
//   - An epoch names one run of a channel's offsets: when the broker loses
//     a channel's offsets or history (a restart without persistence, an
//     expiry after the history TTL without use), it starts a new epoch
//     (NewEpoch) and offsets restart at 1. Publish and History create the
//     channel, in a new epoch, if it does not exist.
//   - History keeps at most the configured number of messages per channel,
//     none older than the TTL; a History call counts as use of the channel.
//   - A Node calls Publish and History from worker goroutines that must not
//     block: fail fast (ErrBrokerUnavailable, or a wrapped error) while
//     disconnected rather than wait.
//   - After a reconnection, when messages may have been missed, call
//     resync: the Node then catches every channel up from History.
//
// A broker may also report the history it keeps (HistoryLimits() (int,
// time.Duration)); a Node then takes those limits instead of repeating them
// in its Config.
//
// Every implementation also keeps the bounds of BrokerOptions (channel
// caps, history byte budget) for all nodes together, and returns an error
// that wraps ErrTooManyChannels when a channel cap refuses a publish or a
// read: the node tells clients "too many channels" (503), not "broker
// unavailable". A History call is a read by a subscriber: it marks the
// channel as one with subscribers.
type Broker interface {
	// Start makes deliver receive every channel message published on any
	// node, in order per channel, until ctx is done, reconnecting by
	// itself; the returned channel closes once it has stopped. It returns
	// at once: a message published after that reaches deliver (once Ready,
	// for a broker that must connect). deliver may be called from several
	// goroutines, never concurrently for one channel. resync is called
	// after every reconnection, when messages may have been missed.
	Start(ctx context.Context, deliver func(Message), resync func()) (stopped <-chan struct{})

	// Publish appends data (one JSON value) to channel and returns its
	// position. The message reaches subscribers through Start, on every node.
	Publish(ctx context.Context, channel string, data []byte) (Position, error)

	// History returns channel's latest position and, up to limit, the kept
	// messages after offset after, oldest first, that are younger than the
	// history TTL.
	History(ctx context.Context, channel string, after uint64, limit int) (Position, []Message, error)

	// Ready reports whether the broker is connected and delivering.
	Ready() bool
}

// Message is a channel message as a broker carries it (not a WebSocket
// message, frame.Message: subscribers receive it wrapped in a JSON
// envelope, built once per node). Offset 0 marks one
// injected from outside Fanout (a plain PUBLISH to the broker): it has no
// place in history and reaches subscribers without an offset.
type Message struct {
	Channel string
	Position
	Data []byte
}

// ErrBrokerUnavailable is returned by Publish and Subscribe while the
// broker is disconnected: nothing is accepted that could not be delivered.
var ErrBrokerUnavailable = errors.New("pubsub: broker unavailable")

// brokerTimeout bounds one broker call made on a worker.
const brokerTimeout = 2 * time.Second

// deliver hands a broker message to this node's subscribers of its
// channel. It runs on the broker's delivery goroutine, in order per
// channel; a hole in the offsets (messages missed while the broker
// reconnected) is filled from history first.
func (n *Node) deliver(m Message) {
	n.chans.mu.RLock()
	ch := n.chans.m[m.Channel]
	n.chans.mu.RUnlock()
	if ch == nil {
		return // no subscriber here
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
	after, limit := ch.offset, max(n.cfg.HistorySize, 0)
	top, msgs, err := b.History(ctx, ch.name, after, limit)
	newEpoch := err == nil && top.Epoch != ch.epoch
	if newEpoch { // offsets restarted: all of the new epoch is news
		after = 0
		top, msgs, err = b.History(ctx, ch.name, 0, limit)
	}
	if err != nil {
		n.log.Warn("broker history unavailable; subscribers may miss messages", "channel", ch.name, "err", err)
		n.gapNotice(ch, reply{Reason: "messages may be lost: the broker's history is unavailable"})
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
	switch {
	case newEpoch && ch.epoch != "":
		n.gapNotice(ch, reply{Epoch: top.Epoch, First: &first, Reason: gapEpoch})
	case !newEpoch && first > after+1:
		n.gapNotice(ch, reply{First: &first, Reason: gapLost})
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

// The reasons of gap notices. Each notice has first, the next offset the
// client gets; one with epoch tells that offsets went back (a reset): the
// client adopts the epoch and counts from first again.
const (
	gapEpoch = "epoch changed: the channel's history restarted (server or broker restart, or expiry); offsets restart at first"
	gapAhead = "since is ahead of the channel's offset; offsets continue at first"
	gapLost  = "history does not reach back to since; messages before first are lost"
)

// gapNotice tells every subscriber of ch on this node that messages after
// ch.offset were lost: g's first, epoch and reason.
func (n *Node) gapNotice(ch *channel, g reply) {
	since := ch.offset
	g.Type, g.Channel, g.Since = "gap", ch.name, &since
	ch.hub.BroadcastPrepared(frame.NewPrepared(frame.OpText, replyPayload(g)))
}

// resync catches every channel with subscribers up after the broker
// reconnected.
func (n *Node) resync() {
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
