package redis

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fanout-ws/fanout/server/pubsub"
	goredis "github.com/redis/go-redis/v9"
)

// Pipelined publishing: concurrent publishes from this node share Redis
// round trips. Each call (Publish, or PublishBatch with all its messages)
// joins the queue of one of publishLanes lanes, in turn; one goroutine per
// lane at a time sends what has gathered there as one pipeline of
// publishScript calls (each for up to maxScriptMessages messages), and
// while it is on its way the next pipeline gathers. Redis runs a pipeline
// in order, and a call its messages in order, so a batch's messages keep
// their order, and each gets its own reply: the same offsets, epochs and
// errors as one call each. Calls in different lanes overlap,
// as concurrent calls always could: a call returns only once Redis has
// run it, so every order a caller can see (one publish after another's
// answer) holds.

// maxPipeline caps the publishes of one round trip.
const maxPipeline = 1000

// publishLanes is how many pipelines may be on their way at once, so that
// Redis works while the node encodes the next pipeline and reads the last.
const publishLanes = 4

// publisher is the lanes of publishes waiting for a round trip.
type publisher struct {
	next                 atomic.Uint32
	roundTrips, messages atomic.Uint64
	lanes                [publishLanes]lane
}

// lane is a queue with at most one pipeline on its way.
type lane struct {
	mu    sync.Mutex
	queue []queued
	busy  bool // a goroutine is sending the queue
}

// publishGroup is one PublishBatch call: its messages wait in the queue
// together, in order.
type publishGroup struct {
	ctx  context.Context
	msgs []pubsub.Message
	pos  []pubsub.Position
	errs []error
	left atomic.Int32
	done chan struct{} // closed when every message has its answer
}

type queued struct {
	g *publishGroup
	i int
}

// Publish appends data to channel's stream and publishes it, in a round
// trip shared with the publishes made meanwhile.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (pubsub.Position, error) {
	pos, errs := b.PublishBatch(ctx, []pubsub.Message{{Channel: channel, Data: data}})
	return pos[0], errs[0]
}

// PublishBatch publishes msgs in order, in one round trip when they fit in
// one pipeline (maxPipeline), shared with the publishes made meanwhile.
func (b *Broker) PublishBatch(ctx context.Context, msgs []pubsub.Message) ([]pubsub.Position, []error) {
	g := &publishGroup{ctx: ctx, msgs: msgs, pos: make([]pubsub.Position, len(msgs)), errs: make([]error, len(msgs)), done: make(chan struct{})}
	g.left.Store(int32(len(msgs)))
	l := &b.pub.lanes[b.pub.next.Add(1)%publishLanes]
	l.mu.Lock()
	for i := range msgs {
		l.queue = append(l.queue, queued{g, i})
	}
	start := !l.busy
	l.busy = true
	l.mu.Unlock()
	if start {
		go b.sendQueue(l)
	}
	select {
	case <-g.done:
		return g.pos, g.errs
	case <-ctx.Done(): // g's answers may still be written: do not read them
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return make([]pubsub.Position, len(msgs)), errs
	}
}

// sendQueue sends l's queue, a pipeline at a time, until it is empty.
func (b *Broker) sendQueue(l *lane) {
	for {
		l.mu.Lock()
		n := min(len(l.queue), maxPipeline)
		if n == 0 {
			l.busy = false
			l.queue = nil // drop the backing array a burst grew
			l.mu.Unlock()
			return
		}
		batch := make([]queued, n)
		copy(batch, l.queue)
		l.queue = append(l.queue[:0], l.queue[n:]...)
		l.mu.Unlock()
		b.sendPipeline(batch)
	}
}

// sendPipeline publishes batch in one round trip (two when Redis lost the
// script), and answers each message.
func (b *Broker) sendPipeline(batch []queued) {
	live := batch[:0:0]
	for _, q := range batch {
		if err := q.g.ctx.Err(); err != nil { // its caller gave up: do not publish behind its back
			q.answer(pubsub.Position{}, err)
		} else {
			live = append(live, q)
		}
	}
	for try := 0; len(live) > 0; try++ {
		calls := b.pipeline(live)
		var again []queued // Redis restarted or flushed its scripts: load it, then send these again
		for _, c := range calls {
			res, err := c.cmd.Slice()
			if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") && try == 0 {
				again = append(again, c.msgs...)
				continue
			}
			var pos []pubsub.Position
			var errs []error
			if err == nil {
				pos, errs, err = publishReplies(res, len(c.msgs))
			}
			for i, q := range c.msgs {
				if err != nil {
					q.answer(pubsub.Position{}, scriptError(err))
				} else {
					q.answer(pos[i], errs[i])
				}
			}
		}
		if len(again) > 0 {
			if err := publishScript.Load(context.Background(), b.rdb).Err(); err != nil {
				for _, q := range again {
					q.answer(pubsub.Position{}, err)
				}
				return
			}
		}
		live = again
	}
}

// maxScriptMessages caps the messages of one script call, so that one call
// holds Redis (single-threaded) for a millisecond or so, not a whole
// pipeline's worth.
const maxScriptMessages = 100

// scriptCall is one publishScript call of a pipeline and its messages.
type scriptCall struct {
	msgs []queued
	cmd  *goredis.Cmd
}

// pipeline sends batch as one pipeline of publishScript calls: each key
// space's messages in order, maxScriptMessages a call.
func (b *Broker) pipeline(batch []queued) []scriptCall {
	bySpace := map[*space][]queued{}
	var order []*space
	for _, q := range batch {
		s := b.space(q.g.msgs[q.i].Channel)
		if bySpace[s] == nil {
			order = append(order, s)
		}
		bySpace[s] = append(bySpace[s], q)
	}
	var calls []scriptCall
	for _, s := range order {
		for qs := bySpace[s]; len(qs) > 0; {
			n := min(len(qs), maxScriptMessages)
			calls = append(calls, scriptCall{msgs: qs[:n]})
			qs = qs[n:]
		}
	}
	ctx := context.Background() // bounded by the client's read and write timeouts
	_, _ = b.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		msgs := make([]pubsub.Message, 0, maxScriptMessages)
		for i, c := range calls {
			msgs = msgs[:0]
			for _, q := range c.msgs {
				msgs = append(msgs, q.g.msgs[q.i])
			}
			keys, args := b.publishCall(msgs)
			calls[i].cmd = publishScript.EvalSha(ctx, pipe, keys, args...)
		}
		return nil
	}) // each command holds its own error
	b.pub.roundTrips.Add(1)
	b.pub.messages.Add(uint64(len(batch)))
	return calls
}

// answer gives one queued message its outcome.
func (q queued) answer(pos pubsub.Position, err error) {
	q.g.pos[q.i], q.g.errs[q.i] = pos, err
	if q.g.left.Add(-1) == 0 {
		close(q.g.done)
	}
}
