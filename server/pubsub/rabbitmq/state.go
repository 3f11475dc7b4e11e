package rabbitmq

import (
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
)

// state is every channel's position and history as this node derived it
// from the stream. apply is deterministic: nodes that read the same part of
// the stream hold the same positions, so offsets agree across nodes
// without a shared counter. The broker's mu guards it.
type state struct {
	ttl      int64 // history TTL, ms
	size     int   // history entries kept per channel; 0 keeps none
	maxBytes int64 // history budget of this node, bytes

	chans  map[string]*chanState
	unread int      // channels in chans made by a publish and never touched
	fifo   []*entry // every kept message, in stream order, oldest first
	bytes  int64    // charged by the entries in fifo
}

type chanState struct {
	epoch   string
	offset  uint64
	last    int64    // ms, publisher's time of the last publish or touch
	pending uint64   // highest offset this node proposed that is still in flight
	read    bool     // touched: a node has subscribers (else counted in unread)
	hist    []*entry // this channel's kept messages, oldest first
	// released: a node released the channel (kindRelease) and none has
	// touched or published it since; without history, it may be forgotten.
	released bool
	// touchSent is when (ms) this node last queued a touch without waiting
	// for it (History); a release clears it, to take the channel back.
	touchSent int64
}

type entry struct {
	ch     *chanState
	offset uint64
	at     int64 // ms
	data   []byte
}

// entryOverhead is what an entry costs beside its data, so that a flood of
// tiny messages is bounded too.
const entryOverhead = 96

func newState(ttl time.Duration, size int, maxBytes int64) *state {
	return &state{ttl: ttl.Milliseconds(), size: max(size, 0), maxBytes: maxBytes, chans: make(map[string]*chanState)}
}

// live returns channel's state unless it expired by time at (ms): a channel
// unused for the TTL starts a new epoch, as with the other brokers.
func (s *state) live(channel string, at int64) *chanState {
	if st := s.chans[channel]; st != nil && at-st.last <= s.ttl {
		return st
	}
	return nil
}

// apply runs one proposal read from the stream. A publish is accepted when
// it follows the channel's last offset in its epoch, or when the channel
// has no live state (its proposal starts or adopts the epoch); a touch
// keeps the channel alive and marks it read (History touches: a node has
// subscribers). It returns the channel's state afterwards and whether a
// publish was accepted.
func (s *state) apply(p *proposal) (*chanState, bool) {
	if p.kind == kindRelease || p.kind == kindForget {
		return s.release(p), false
	}
	st := s.live(p.channel, p.at)
	if st == nil {
		st = &chanState{epoch: p.epoch, offset: p.offset}
		s.replace(p.channel, st)
		if p.kind == kindTouch {
			st.last, st.read = p.at, true
			return st, false
		}
		s.unread++
		st.offset = p.offset - 1
	}
	switch {
	case p.kind == kindTouch:
		if p.epoch == st.epoch {
			st.last, st.released = max(st.last, p.at), false
			s.markRead(st)
		}
		return st, false
	case p.epoch != st.epoch || p.offset != st.offset+1:
		return st, false
	}
	st.offset, st.last, st.released = p.offset, max(st.last, p.at), false
	if s.size > 0 {
		s.keep(st, p.offset, p.at, p.data)
	}
	return st, true
}

// release applies a release or a forget proposal and returns the
// channel's state, nil if it has none. A forget drops the channel only if
// it is still as the proposer saw it: released, at the same epoch and
// offset, without history; so every node drops the same channels.
func (s *state) release(p *proposal) *chanState {
	st := s.chans[p.channel]
	if st == nil || st.epoch != p.epoch {
		return st
	}
	switch {
	case p.kind == kindRelease:
		st.released, st.touchSent = true, 0
	case st.released && st.offset == p.offset && len(st.hist) == 0:
		s.markRead(st)
		delete(s.chans, p.channel)
	}
	return st
}

// victim returns a channel that a forget proposal may drop, if any.
func (s *state) victim() (string, *chanState) {
	for name, st := range s.chans {
		if st.released && len(st.hist) == 0 {
			return name, st
		}
	}
	return "", nil
}

// replace makes st channel's state, forgetting the expired one's history.
func (s *state) replace(channel string, st *chanState) {
	if old := s.chans[channel]; old != nil {
		s.dropHistory(old)
		s.markRead(old)
	}
	s.chans[channel] = st
}

// markRead takes st out of the unread count.
func (s *state) markRead(st *chanState) {
	if !st.read {
		st.read = true
		s.unread--
	}
}

// keep appends a message to history, then drops the oldest entries beyond
// the channel's size and the node's byte budget.
func (s *state) keep(st *chanState, offset uint64, at int64, data []byte) {
	e := &entry{ch: st, offset: offset, at: at, data: data}
	st.hist = append(st.hist, e)
	if len(st.hist) > s.size {
		st.hist[0] = nil
		st.hist = st.hist[1:]
	}
	s.fifo = append(s.fifo, e)
	s.bytes += int64(len(data)) + entryOverhead
	for s.bytes > s.maxBytes && len(s.fifo) > 0 {
		s.evict()
	}
}

// evict forgets the oldest kept message.
func (s *state) evict() {
	e := s.fifo[0]
	s.fifo[0] = nil
	s.fifo = s.fifo[1:]
	s.bytes -= int64(len(e.data)) + entryOverhead
	if h := e.ch.hist; len(h) > 0 && h[0] == e {
		h[0] = nil
		e.ch.hist = h[1:]
	}
}

// dropHistory forgets a channel's history when it starts a new epoch; its
// entries leave the budget as they reach the front of fifo.
func (s *state) dropHistory(st *chanState) {
	clear(st.hist)
	st.hist = nil
}

// sweep drops history older than the TTL and forgets channels unused for
// longer than the TTL plus skew (ms): any message of theirs to come would
// find them expired anyway.
func (s *state) sweep(now, skew int64) {
	for len(s.fifo) > 0 && s.fifo[0].at < now-s.ttl {
		s.evict()
	}
	for name, st := range s.chans {
		if st.last < now-s.ttl-skew && len(st.hist) == 0 {
			s.markRead(st)
			delete(s.chans, name)
		}
	}
}

// history returns channel's position and, up to limit, its kept messages
// after offset after that are younger than the TTL at now (ms).
func (s *state) history(channel string, st *chanState, after uint64, limit int, now int64) (pubsub.Position, []pubsub.Message) {
	top := pubsub.Position{Offset: st.offset, Epoch: st.epoch}
	var msgs []pubsub.Message
	for _, e := range st.hist {
		if len(msgs) >= limit {
			break
		}
		if e.offset > after && e.at >= now-s.ttl {
			msgs = append(msgs, pubsub.Message{Channel: channel, Position: pubsub.Position{Offset: e.offset, Epoch: st.epoch}, Data: e.data})
		}
	}
	return top, msgs
}
