package rabbitmq

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A node derives its state from the stream it reads, from the history TTL
// (plus skew) back. When retention by size (max-length-bytes, which
// publishers can fill) dropped part of that window, the proposals that
// made a live channel may be gone, and a node that derived its state from
// what is left alone would start an epoch of its own for a channel the
// others keep: each would then deliver only its own publishes. So a node
// whose window does not reach back far enough asks for a snapshot (a want
// proposal): every settled node answers with the state of every live
// channel as it was when it read the want, and the asking node, which
// keeps what it reads after its want aside, takes the first complete
// answer and applies what it kept aside on top: its state is then exactly
// the answering node's. It reports ready only once settled. When no node
// answers within settleTimeout (none is running), it goes on with what it
// derived.

// settleTimeout is how long a node whose window was cut waits for a
// snapshot before it goes on alone.
const settleTimeout = 3 * time.Second

// maxBuffered bounds what a settling node keeps aside; past it, it goes on
// alone.
const maxBuffered = 1 << 16

// snapshotPartBytes bounds one snapshot message (the stream's frames are
// at most 1 MiB).
const snapshotPartBytes = 256 << 10

// settling is a session's part in the snapshot exchange.
type settling struct {
	started   bool // the first message was read
	want      uint64
	unsettled bool // want sent and not answered yet
	buffering bool // own want read: keep what follows aside
	kept      []proposal
	parts     map[string][]*string // snapshot parts by answering node, nil until read
}

func (s *settling) settled() bool { return !s.unsettled }

// checkWindow looks at the first message of a session, at offset in the
// stream: when earlier messages were dropped and the first one is younger
// than the window, retention cut it, and the node asks for a snapshot.
func (b *Broker) checkWindow(sess *session, offset int64, p *proposal, ok bool) {
	sess.started = true
	if offset == 0 || ok && p.at <= sess.from {
		return
	}
	sess.want = b.seq.Add(1)
	want := proposal{kind: kindWant, node: b.node, seq: sess.want, at: time.Now().UnixMilli()}
	select {
	case b.later <- want.encode():
		sess.unsettled = true
		b.log.Info("rabbitmq broker: retention cut the stream within the history TTL; asking the other nodes for their state", "stream", b.name)
	default:
	}
}

// handleSettling handles a want or a snapshot part.
func (b *Broker) handleSettling(sess *session, p *proposal, resync func()) {
	switch {
	case p.kind == kindWant && p.node == b.node && p.seq == sess.want && sess.unsettled:
		sess.buffering = true
		sess.settleBy <- struct{}{}
	case p.kind == kindWant && p.node != b.node && sess.live:
		b.answer(p)
	case p.kind == kindSnapshot && sess.buffering && p.epoch == b.node && p.offset == sess.want:
		b.collect(sess, p, resync)
	}
}

// buffer keeps a proposal read after this node's want aside.
func (b *Broker) buffer(sess *session, p *proposal, resync func()) {
	if len(sess.kept) == maxBuffered {
		b.log.Warn("rabbitmq broker: no snapshot while the stream moved on; going on alone", "stream", b.name)
		b.settle(sess, nil, resync)
		b.apply(sess, p)
		return
	}
	sess.kept = append(sess.kept, *p)
}

// settleAlone goes on without a snapshot once settleTimeout has passed.
func (b *Broker) settleAlone(sess *session, resync func()) {
	b.handling.Lock()
	defer b.handling.Unlock()
	if !sess.closed && sess.unsettled {
		b.log.Warn("rabbitmq broker: no node answered with its state; going on with what the stream holds", "stream", b.name, "waited", settleTimeout)
		b.settle(sess, nil, resync)
	}
}

// settle installs snap (nil: none), applies what was kept aside and goes
// live if the hello was read. b.handling is held.
func (b *Broker) settle(sess *session, snap []snapEntry, resync func()) {
	b.mu.Lock()
	if snap != nil {
		b.st.install(snap)
	}
	for i := range sess.kept {
		b.st.apply(&sess.kept[i])
	}
	b.mu.Unlock()
	sess.settling = settling{started: true}
	b.goLive(sess, resync)
}

// snapEntry is one channel's state in a snapshot.
type snapEntry struct {
	channel, epoch string
	offset         uint64
	last           int64
	read, released bool
}

// answer sends, for another node's want, the state of every channel live
// when the want was read, in parts. b.handling is held.
func (b *Broker) answer(want *proposal) {
	var parts []string
	var part strings.Builder
	b.mu.Lock()
	for name, st := range b.st.chans {
		if b.st.live(name, want.at) == nil || st.epoch == "" { // "": a foreign writer's, unparsable
			continue
		}
		fmt.Fprintf(&part, "%s %s %d %d %t %t\n", name, st.epoch, st.offset, st.last, st.read, st.released)
		if part.Len() >= snapshotPartBytes {
			parts = append(parts, part.String())
			part.Reset()
		}
	}
	b.mu.Unlock()
	parts = append(parts, part.String())
	for i, data := range parts {
		p := proposal{kind: kindSnapshot, node: b.node, seq: b.seq.Add(1), epoch: want.node, offset: want.seq,
			at: time.Now().UnixMilli(), channel: fmt.Sprintf("%d/%d", i+1, len(parts)), data: []byte(data)}
		select {
		case b.later <- p.encode():
		default: // the asking node goes on alone after settleTimeout
			return
		}
	}
}

// collect keeps a snapshot part for this node's want and settles once one
// node's parts are all in.
func (b *Broker) collect(sess *session, p *proposal, resync func()) {
	i, n, err := partOf(p.channel)
	if err != nil {
		return
	}
	if sess.parts == nil {
		sess.parts = make(map[string][]*string)
	}
	parts := sess.parts[p.node]
	if parts == nil {
		parts = make([]*string, n)
		sess.parts[p.node] = parts
	}
	if len(parts) != n {
		return
	}
	data := string(p.data)
	parts[i-1] = &data
	var all strings.Builder
	for _, part := range parts {
		if part == nil {
			return // not all in yet
		}
		all.WriteString(*part)
	}
	snap, err := parseSnapshot(all.String())
	if err != nil {
		b.log.Warn("rabbitmq broker: unreadable snapshot", "from", p.node, "err", err)
		return
	}
	b.log.Info("rabbitmq broker: took the state of another node", "from", p.node, "channels", len(snap))
	b.settle(sess, snap, resync)
}

// partOf parses "i/n".
func partOf(s string) (i, n int, err error) {
	a, c, _ := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(c)
	if err1 != nil || err2 != nil || i < 1 || i > n || n > 1<<16 {
		return 0, 0, fmt.Errorf("rabbitmq: snapshot part %q", s)
	}
	return i, n, nil
}

// parseSnapshot reads the lines answer writes.
func parseSnapshot(s string) ([]snapEntry, error) {
	var snap []snapEntry
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) != 6 {
			return nil, fmt.Errorf("rabbitmq: snapshot line %q", line)
		}
		e := snapEntry{channel: f[0], epoch: f[1]}
		var errs [4]error
		e.offset, errs[0] = strconv.ParseUint(f[2], 10, 64)
		e.last, errs[1] = strconv.ParseInt(f[3], 10, 64)
		e.read, errs[2] = strconv.ParseBool(f[4])
		e.released, errs[3] = strconv.ParseBool(f[5])
		for _, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("rabbitmq: snapshot line %q: %w", line, err)
			}
		}
		snap = append(snap, e)
	}
	return snap, nil
}

// install makes snap the state of every channel: a channel this node knows
// in the same epoch keeps its history up to the snapshot's offset; any
// other starts without history, and a channel the snapshot does not hold
// is forgotten.
func (s *state) install(snap []snapEntry) {
	chans := make(map[string]*chanState, len(snap))
	for _, e := range snap {
		st := s.chans[e.channel]
		if st == nil || st.epoch != e.epoch {
			st = &chanState{epoch: e.epoch}
		}
		for len(st.hist) > 0 && st.hist[len(st.hist)-1].offset > e.offset {
			st.hist = st.hist[:len(st.hist)-1]
		}
		st.offset, st.last, st.read, st.released, st.pending = e.offset, e.last, e.read, e.released, 0
		chans[e.channel] = st
	}
	s.unread = 0
	for name, st := range s.chans {
		if chans[name] != st {
			s.dropHistory(st)
		}
	}
	for _, st := range chans {
		if !st.read {
			s.unread++
		}
	}
	s.chans = chans
}
