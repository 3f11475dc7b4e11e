package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/amqp"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/message"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"
)

// session connects, rebuilds the state from the stream's last TTL, says
// hello, and consumes until the connection or ctx ends. resync runs once
// the hello is read back and the state settled (snapshot.go).
func (b *Broker) session(ctx context.Context, resync func()) error {
	env, err := stream.NewEnvironment(stream.NewEnvironmentOptions().SetUri(b.uri).SetRPCTimeout(5 * time.Second).
		SetReadBuffer(socketBufferBytes).SetWriteBuffer(socketBufferBytes))
	if err != nil {
		return err
	}
	defer env.Close()
	if err := env.DeclareStream(b.name, b.retention); err != nil && !errors.Is(err, stream.StreamAlreadyExists) {
		return err
	}
	sess := &session{hello: b.seq.Add(1)}
	b.mu.Lock()
	b.st = newState(b.ttl, b.size, b.maxBytes)
	b.mu.Unlock()
	defer b.end(sess)

	from := time.Now().Add(-b.ttl - clockSkew).UnixMilli()
	sess.from, sess.settleBy = from, make(chan struct{}, 1)
	cons, err := env.NewConsumer(b.name, func(c stream.ConsumerContext, m *amqp.Message) { b.handle(sess, c.Consumer.GetOffset(), m, resync) },
		stream.NewConsumerOptions().SetOffset(stream.OffsetSpecification{}.Timestamp(from)).SetClientProvidedName("fanout-"+b.node))
	if err != nil {
		return err
	}
	prod, err := env.NewProducer(b.name, stream.NewProducerOptions().SetClientProvidedName("fanout-"+b.node))
	if err != nil {
		return err
	}
	consClosed, prodClosed := cons.NotifyClose(), prod.NotifyClose() // each call replaces the last
	b.mu.Lock()
	b.prod = prod
	b.mu.Unlock()
	hello := proposal{kind: kindHello, node: b.node, seq: sess.hello, at: time.Now().UnixMilli()}
	if err := prod.BatchSend([]message.StreamMessage{amqp.NewMessage(hello.encode())}); err != nil {
		return err
	}
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-consClosed:
			return fmt.Errorf("consumer closed: %v", e.Err)
		case e := <-prodClosed:
			return fmt.Errorf("producer closed: %v", e.Err)
		case <-b.touchDue:
			if err := b.sendTouches(prod); err != nil {
				return err
			}
		case body := <-b.later:
			if err := prod.BatchSend([]message.StreamMessage{amqp.NewMessage(body)}); err != nil {
				return err
			}
		case <-sess.settleBy:
			settle = time.After(settleTimeout)
		case <-settle:
			b.settleAlone(sess, resync)
		case now := <-sweep.C:
			b.mu.Lock()
			b.st.sweep(now.UnixMilli(), clockSkew.Milliseconds())
			b.mu.Unlock()
		}
	}
}

// end stops sess's deliveries and fails the proposals still waiting.
func (b *Broker) end(sess *session) {
	b.ready.Store(false)
	b.handling.Lock()
	sess.closed = true
	b.handling.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prod = nil
	for seq, w := range b.waiters {
		w <- result{err: pubsub.ErrBrokerUnavailable}
		delete(b.waiters, seq)
	}
}

// handle handles one stream message, at offset in the stream. Before this
// session's hello is read back and its state settled (snapshot.go), the
// messages only rebuild the state: subscribers already had them, or get
// them from history when resync catches their channels up.
func (b *Broker) handle(sess *session, offset int64, m *amqp.Message, resync func()) {
	b.handling.Lock()
	defer b.handling.Unlock()
	if sess.closed {
		return
	}
	p, ok := decode(m.GetData())
	if !sess.started {
		b.checkWindow(sess, offset, &p, ok)
	}
	switch {
	case !ok:
		if sess.live {
			b.external(m)
		}
	case p.kind == kindHello:
		if p.node == b.node && p.seq == sess.hello {
			sess.helloRead = true
			b.goLive(sess, resync)
		}
	case p.kind == kindWant || p.kind == kindSnapshot:
		b.handleSettling(sess, &p, resync)
	case sess.buffering:
		b.buffer(sess, &p, resync)
	default:
		b.apply(sess, &p)
	}
}

// goLive starts delivering once the hello is read and the state settled.
func (b *Broker) goLive(sess *session, resync func()) {
	if !sess.helloRead || !sess.settled() || sess.live {
		return
	}
	sess.live = true
	b.ready.Store(true)
	b.log.Info("rabbitmq broker connected", "stream", b.name)
	resync()
}

// apply applies one proposal to the state, answers this node's waiter for
// it and queues an accepted message for delivery.
func (b *Broker) apply(sess *session, p *proposal) {
	b.mu.Lock()
	st, accepted := b.st.apply(p)
	var w chan result
	if p.node == b.node {
		if w = b.waiters[p.seq]; w != nil {
			delete(b.waiters, p.seq)
		}
		if !accepted && p.kind == kindPublish {
			st.pending = 0 // what this node proposed after it fails too
		}
	}
	var pos pubsub.Position
	if st != nil { // a release or forget may leave none
		pos = pubsub.Position{Offset: st.offset, Epoch: st.epoch}
	}
	b.mu.Unlock()
	if w != nil {
		w <- result{accepted: accepted, pos: pos}
	}
	if accepted && sess.live {
		b.queue(pubsub.Message{Channel: p.channel, Position: pubsub.Position{Offset: p.offset, Epoch: p.epoch}, Data: p.data})
	}
}

// queue hands m to the delivery goroutine without waiting (see out): when
// the queue is full, m is dropped and the node's channels are caught up
// from history once it drains, as after a reconnection.
func (b *Broker) queue(m pubsub.Message) {
	select {
	case b.out <- m:
	default:
		b.dropped.Store(true)
	}
}

// external delivers a message written to the stream by another client: a
// JSON body with the application property "channel". It has no offset.
func (b *Broker) external(m *amqp.Message) {
	channel, _ := m.ApplicationProperties["channel"].(string)
	data := m.GetData()
	if pubsub.CheckChannelName(channel) != nil || !json.Valid(data) {
		b.log.Warn("rabbitmq broker: dropped a stream message that is neither Fanout's nor JSON with a channel property")
		return
	}
	b.queue(pubsub.Message{Channel: channel, Data: data})
}
