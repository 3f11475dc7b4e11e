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
// publishScript calls, and while it is on its way the next pipeline
// gathers. Redis runs a pipeline in order, so a batch's messages keep
// their order, and each gets its own script reply: the same offsets,
// epochs and errors as one call each. Calls in different lanes overlap,
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

// sendPipeline runs publishScript for each message of batch in one round
// trip (two when Redis lost the script), and answers them.
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
		cmds := b.pipeline(live)
		var again []queued // Redis restarted or flushed its scripts: load it, then send these again
		for i, cmd := range cmds {
			res, err := cmd.Slice()
			if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") && try == 0 {
				again = append(again, live[i])
				continue
			}
			var pos pubsub.Position
			if err == nil {
				pos, err = scriptPosition(res)
			}
			live[i].answer(pos, scriptError(err))
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

// pipeline sends one publishScript call per message, as one pipeline.
func (b *Broker) pipeline(batch []queued) []*goredis.Cmd {
	ctx := context.Background() // bounded by the client's read and write timeouts
	cmds := make([]*goredis.Cmd, len(batch))
	_, _ = b.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for i, q := range batch {
			m := q.g.msgs[q.i]
			cmds[i] = publishScript.EvalSha(ctx, pipe, b.keys(m.Channel), b.publishArgs(m.Channel, m.Data)...)
		}
		return nil
	}) // each command holds its own error
	b.pub.roundTrips.Add(1)
	b.pub.messages.Add(uint64(len(batch)))
	return cmds
}

// answer gives one queued message its outcome.
func (q queued) answer(pos pubsub.Position, err error) {
	q.g.pos[q.i], q.g.errs[q.i] = pos, err
	if q.g.left.Add(-1) == 0 {
		close(q.g.done)
	}
}
