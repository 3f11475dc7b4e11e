package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/amqp"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/message"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"
)

// Publish proposes data at channel's next offset and returns once this
// node has read the proposal back from the stream, proposing again while
// other nodes' proposals win.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (pubsub.Position, error) {
	for {
		p, err := b.proposeRoom(ctx, kindPublish, channel, data)
		if err != nil {
			return pubsub.Position{}, err
		}
		b.publishes.Add(1)
		r, err := b.send(ctx, p)
		if err != nil {
			return pubsub.Position{}, err
		}
		if r.accepted {
			return pubsub.Position{Offset: p.offset, Epoch: p.epoch}, nil
		}
	}
}

// BrokerStats reports the stream consumer (every node reads the whole
// stream: one subscription while connected) and the publish proposals
// sent, one stream round trip and one message each (a proposal that lost
// its offset to another node's is sent again).
func (b *Broker) BrokerStats() pubsub.BrokerStats {
	held := 0
	if b.ready.Load() {
		held = 1
	}
	n := b.publishes.Load()
	return pubsub.BrokerStats{Subscriptions: held, PublishRoundTrips: n, PublishedMessages: n}
}

// PublishBatch publishes msgs, each channel's in order (a publish is
// accepted only as its channel's next offset, so a channel's messages go
// one after another), the channels concurrently.
func (b *Broker) PublishBatch(ctx context.Context, msgs []pubsub.Message) ([]pubsub.Position, []error) {
	return pubsub.PublishByChannel(ctx, msgs, b.Publish)
}

// History returns channel's position and the kept messages after after.
// A live channel is answered from this node's state: when it was not
// touched (read) yet, a node released it, or it was not used for half the
// TTL, a touch is sent through the stream so that every node marks it read
// and keeps it alive, but not waited for. The caller may hold a lock that
// this node's deliveries wait for (pubsub's channel lock), and they come
// from the consumer that would read the touch back. Only a channel this
// node does not know waits, for the stream to settle its epoch; the
// consumer never waits for deliveries (see out), so that wait ends.
func (b *Broker) History(ctx context.Context, channel string, after uint64, limit int) (pubsub.Position, []pubsub.Message, error) {
	now := time.Now().UnixMilli()
	b.mu.Lock()
	if st := b.st.live(channel, now); st != nil && b.prod != nil {
		defer b.mu.Unlock()
		if !st.read || st.released || now-st.last >= b.st.ttl/2 {
			b.touchLater(channel, st, now)
		}
		top, msgs := b.st.history(channel, st, after, limit, now)
		return top, msgs, nil
	}
	b.mu.Unlock()
	p, err := b.proposeRoom(ctx, kindTouch, channel, nil)
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	r, err := b.send(ctx, p)
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.st.chans[channel]; st != nil && st.epoch == r.pos.Epoch {
		top, msgs := b.st.history(channel, st, after, limit, time.Now().UnixMilli())
		return top, msgs, nil
	}
	return r.pos, nil, nil
}

// touchLater has the session touch channel, unless this node did in the
// last eighth of the TTL and that touch may still be in flight. b.mu is
// held.
func (b *Broker) touchLater(channel string, st *chanState, now int64) {
	if now-st.touchSent < b.st.ttl/8 {
		return
	}
	st.touchSent = now
	b.toTouch[channel] = struct{}{}
	select {
	case b.touchDue <- struct{}{}:
	default: // due already
	}
}

// touchBatch is how many touches the session sends in one call.
const touchBatch = 1000

// sendTouches sends the touches touchLater asked for, each at the
// channel's position now.
func (b *Broker) sendTouches(prod *stream.Producer) error {
	now := time.Now().UnixMilli()
	b.mu.Lock()
	msgs := make([]message.StreamMessage, 0, len(b.toTouch))
	for name := range b.toTouch {
		if st := b.st.live(name, now); st != nil { // else History waits for a touch next time
			p := proposal{kind: kindTouch, node: b.node, seq: b.seq.Add(1), at: now, channel: name, epoch: st.epoch, offset: st.offset}
			msgs = append(msgs, amqp.NewMessage(p.encode()))
		}
	}
	clear(b.toTouch)
	b.mu.Unlock()
	for len(msgs) > 0 {
		n := min(len(msgs), touchBatch)
		if err := prod.BatchSend(msgs[:n]); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// errFull is propose's answer at the channel cap.
var errFull = errors.New("rabbitmq: channel cap reached")

// proposeRoom is propose that, at the channel cap, first has every node
// forget a released channel without history (pubsub.Broker's Release).
func (b *Broker) proposeRoom(ctx context.Context, kind byte, channel string, data []byte) (*proposal, error) {
	p, err := b.propose(kind, channel, data)
	if err == errFull {
		if err = b.makeRoom(ctx); err == nil {
			p, err = b.propose(kind, channel, data)
		}
	}
	if err == errFull {
		err = fmt.Errorf("%w (%d)", pubsub.ErrTooManyChannels, b.max)
	}
	return p, err
}

// makeRoom proposes to forget a released channel that keeps no message and
// waits until it is applied; errFull if there is none.
func (b *Broker) makeRoom(ctx context.Context) error {
	b.mu.Lock()
	name, st := b.st.victim()
	var p *proposal
	if st != nil {
		p = &proposal{kind: kindForget, node: b.node, seq: b.seq.Add(1), at: time.Now().UnixMilli(), channel: name, epoch: st.epoch, offset: st.offset}
	}
	b.mu.Unlock()
	if p == nil {
		return errFull
	}
	_, err := b.send(ctx, p)
	return err
}

// Release tells every node that this one has no subscriber of channel
// left (pubsub.Broker); a touch or publish from any node takes it back.
func (b *Broker) Release(ctx context.Context, channel string) error {
	now := time.Now().UnixMilli()
	b.mu.Lock()
	st := b.st.live(channel, now)
	var p *proposal
	if st != nil && !st.released && b.prod != nil && b.ready.Load() {
		p = &proposal{kind: kindRelease, node: b.node, seq: b.seq.Add(1), at: now, channel: channel, epoch: st.epoch, offset: st.offset}
	}
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	_, err := b.send(ctx, p)
	return err
}

// propose builds this node's next proposal for channel from its state.
func (b *Broker) propose(kind byte, channel string, data []byte) (*proposal, error) {
	p := &proposal{kind: kind, node: b.node, seq: b.seq.Add(1), at: time.Now().UnixMilli(), channel: channel, data: data}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.prod == nil || !b.ready.Load() {
		return nil, pubsub.ErrBrokerUnavailable
	}
	st, old := b.st.live(channel, p.at), b.st.chans[channel]
	switch {
	case st == nil && old == nil && len(b.st.chans) >= b.max:
		return nil, errFull
	case st == nil && kind == kindPublish && (old == nil || old.read) && b.st.unread >= pubsub.MaxUnreadChannels(b.max):
		return nil, fmt.Errorf("%w: %d without subscribers", pubsub.ErrTooManyChannels, pubsub.MaxUnreadChannels(b.max))
	case st == nil:
		p.epoch, p.offset = pubsub.NewEpoch(), 0
		if kind == kindPublish {
			p.offset = 1
		}
	case kind == kindPublish:
		p.epoch, p.offset = st.epoch, max(st.offset, st.pending)+1
		st.pending = p.offset
	default:
		p.epoch, p.offset = st.epoch, st.offset
	}
	return p, nil
}

// send writes p to the stream and waits until this node reads it back.
func (b *Broker) send(ctx context.Context, p *proposal) (result, error) {
	w := make(chan result, 1)
	b.mu.Lock()
	prod := b.prod
	if prod == nil {
		b.mu.Unlock()
		return result{}, pubsub.ErrBrokerUnavailable
	}
	b.waiters[p.seq] = w
	b.mu.Unlock()
	forget := func() {
		b.mu.Lock()
		delete(b.waiters, p.seq)
		b.mu.Unlock()
	}
	if err := prod.BatchSend([]message.StreamMessage{amqp.NewMessage(p.encode())}); err != nil {
		forget()
		return result{}, fmt.Errorf("%w: %v", pubsub.ErrBrokerUnavailable, err)
	}
	select {
	case r := <-w:
		return r, r.err
	case <-ctx.Done():
		forget()
		return result{}, fmt.Errorf("%w: %v", pubsub.ErrBrokerUnavailable, ctx.Err())
	}
}
