package pubsub

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Presence on the node bus: this node's notes (deltas, rounds, beats) and
// what it makes of the others' (presence.go describes the protocol).

// sendPresence sends a note; a lost one is repaired by the next round.
// p.mu is held, so that notes leave in the order of the changes.
func (n *Node) sendPresence(kind string, v any) {
	_ = n.bus.send(kind, v)
}

// handlePresence registers the bus handlers, before Start.
func (n *Node) handlePresence() {
	n.bus.handle(kindJoin, func(from nodeID, data json.RawMessage) {
		var d deltaNote
		if from != n.bus.id && json.Unmarshal(data, &d) == nil {
			n.presenceDelta(from, d, true)
		}
	})
	n.bus.handle(kindLeave, func(from nodeID, data json.RawMessage) {
		var d deltaNote
		if from != n.bus.id && json.Unmarshal(data, &d) == nil {
			n.presenceDelta(from, d, false)
		}
	})
	n.bus.handle(kindState, func(from nodeID, data json.RawMessage) {
		var s stateNote
		if from != n.bus.id && json.Unmarshal(data, &s) == nil {
			n.presenceState(from, s)
		}
	})
	n.bus.handle(kindBeat, func(from nodeID, data json.RawMessage) {
		var b beatNote
		if from != n.bus.id && json.Unmarshal(data, &b) == nil {
			n.presenceBeat(from, b)
		}
	})
	for kind, on := range map[string]bool{kindOccupied: true, kindVacated: false} {
		n.bus.handle(kind, func(from nodeID, data json.RawMessage) {
			var o occupancyNote
			if from != n.bus.id && json.Unmarshal(data, &o) == nil {
				p := n.presence
				p.mu.Lock()
				defer p.mu.Unlock()
				p.carriesLocked(p.peerLocked(from, o.Round), o.Channel, o.Round, on)
			}
		})
	}
	n.bus.handle(kindBye, func(from nodeID, _ json.RawMessage) {
		if from != n.bus.id {
			p := n.presence
			p.mu.Lock()
			defer p.mu.Unlock()
			if pr := p.peers[from]; pr != nil {
				p.dropPeerLocked(from, pr)
			}
		}
	})
	n.bus.handle(kindSync, func(from nodeID, _ json.RawMessage) {
		if from != n.bus.id {
			p := n.presence
			p.mu.Lock()
			p.wanted = true
			p.mu.Unlock()
		}
	})
}

// peerLocked returns from's record, heard now in its round: the count of
// state notes restarts with each round. p.mu is held.
func (p *presence) peerLocked(from nodeID, round uint64) *peer {
	pr := p.peers[from]
	if pr == nil {
		pr = &peer{sets: make(map[string]*peerSet)}
		p.peers[from] = pr
	}
	pr.heard = time.Now()
	if round != pr.round {
		pr.round, pr.notes = round, 0
	}
	return pr
}

// setLocked returns from's set of channel. p.mu is held.
func (pr *peer) setLocked(channel string) *peerSet {
	s := pr.sets[channel]
	if s == nil {
		s = &peerSet{members: make(map[string]Member), part: -1}
		pr.sets[channel] = s
	}
	return s
}

// carriesLocked records that pr carries channel, as of round, or no
// longer. p.mu is held.
func (p *presence) carriesLocked(pr *peer, channel string, round uint64, on bool) {
	if p.hooks == nil {
		return
	}
	if pr.carry == nil {
		pr.carry = make(map[string]uint64)
	}
	seen, had := pr.carry[channel]
	switch {
	case on:
		pr.carry[channel] = max(seen, round)
		if !had {
			p.hooks.nodeLocked(channel, true)
		}
	case had:
		delete(pr.carry, channel)
		p.hooks.nodeLocked(channel, false)
	}
}

// presenceDelta applies a join or leave from another node.
func (n *Node) presenceDelta(from nodeID, d deltaNote, join bool) {
	p := n.presence
	if !p.has(d.Channel) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.peerLocked(from, d.Round)
	s := pr.setLocked(d.Channel)
	s.seen = max(s.seen, d.Round)
	_, in := s.members[d.Member.Client]
	switch {
	case join && !in && p.countLocked(d.Channel) < p.maxMembers:
		s.members[d.Member.Client] = d.Member
		p.announce("join", d.Channel, d.Member)
	case join && !in: // the other node's view of the bound lagged this one's
		s.truncated = true
	case !join && in:
		delete(s.members, d.Member.Client)
		p.announce("leave", d.Channel, d.Member)
	}
}

// presenceState takes parts of another node's round; a channel whose
// parts all arrived replaces what this node knew of it there.
func (n *Node) presenceState(from nodeID, st stateNote) {
	p := n.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.peerLocked(from, st.Round)
	pr.notes++
	for _, channel := range st.Carried {
		p.carriesLocked(pr, channel, st.Round, true)
	}
	for _, part := range st.Parts {
		if !p.has(part.Channel) {
			continue
		}
		s := pr.setLocked(part.Channel)
		switch {
		case part.Part == 0:
			s.parts, s.part, s.cut = s.parts[:0], 0, false
		case s.part >= 0 && part.Part == s.part+1:
			s.part = part.Part
		default:
			s.parts, s.part = nil, -1 // a part was lost: wait for the next round
			continue
		}
		keep := min(len(part.Members), p.maxMembers-len(s.parts))
		s.parts = append(s.parts, part.Members[:keep]...)
		s.cut = s.cut || keep < len(part.Members)
		if part.More {
			continue
		}
		fresh := make(map[string]Member, len(s.parts))
		for _, m := range s.parts {
			fresh[m.Client] = m
		}
		s.parts, s.part = nil, -1
		s.seen = max(s.seen, st.Round)
		s.truncated = part.Truncated || s.cut
		p.replaceLocked(pr, part.Channel, s, fresh)
	}
}

// replaceLocked makes fresh the members of s, channel's set on pr, and
// announces the difference: leaves first, then joins. p.mu is held.
func (p *presence) replaceLocked(pr *peer, channel string, s *peerSet, fresh map[string]Member) {
	for _, client := range slices.Sorted(maps.Keys(s.members)) {
		if _, ok := fresh[client]; !ok {
			p.announce("leave", channel, s.members[client])
		}
	}
	for _, client := range slices.Sorted(maps.Keys(fresh)) {
		if _, ok := s.members[client]; !ok {
			p.announce("join", channel, fresh[client])
		}
	}
	s.members = fresh
	if len(fresh) == 0 && s.parts == nil {
		delete(pr.sets, channel)
	}
}

// presenceBeat ends another node's round: when every state note of it
// arrived, the channels it did not confirm have no members there.
func (n *Node) presenceBeat(from nodeID, b beatNote) {
	p := n.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.peerLocked(from, b.Round)
	pr.since = b.Since
	if b.Notes < 0 || pr.notes != b.Notes {
		return
	}
	for _, channel := range slices.Sorted(maps.Keys(pr.carry)) {
		if pr.carry[channel] < b.Round {
			p.carriesLocked(pr, channel, b.Round, false)
		}
	}
	for _, channel := range slices.Sorted(maps.Keys(pr.sets)) {
		if s := pr.sets[channel]; s.seen < b.Round {
			s.parts = nil
			p.replaceLocked(pr, channel, s, nil)
		}
	}
}

// expire drops the members of the nodes not heard from for the expiry.
func (p *presence) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, pr := range p.peers {
		if now.Sub(pr.heard) > p.expiry {
			p.dropPeerLocked(id, pr)
		}
	}
}

// dropPeerLocked forgets a node and its members, announcing their leaves.
// p.mu is held.
func (p *presence) dropPeerLocked(id nodeID, pr *peer) {
	for _, channel := range slices.Sorted(maps.Keys(pr.carry)) {
		p.carriesLocked(pr, channel, 0, false)
	}
	for _, channel := range slices.Sorted(maps.Keys(pr.sets)) {
		s := pr.sets[channel]
		s.parts = nil
		p.replaceLocked(pr, channel, s, nil)
	}
	delete(p.peers, id)
}

// goodbye tells the other nodes, once this node's server has shut down
// (its clients gone), to drop its members now rather than after the
// expiry: the leaves of a whole node's clients may not all fit the bus's
// queue. It waits up to a second for the bus to send it and what came
// before. A node closed while its server still serves says nothing: its
// members expire.
func (n *Node) goodbye() {
	p := n.presence
	if len(p.channels) == 0 && p.hooks == nil || !n.srv.ShuttingDown() || !n.bus.live() {
		return
	}
	p.mu.Lock()
	n.sendPresence(kindBye, struct{}{})
	p.mu.Unlock()
	n.bus.flush(time.Second)
}

// runPresence heartbeats this node's members and expires the others'
// until ctx is done: a round every heartbeat, or at once when another
// node asks (sync); and a sync of its own once the bus is live.
func (n *Node) runPresence(ctx context.Context) {
	p := n.presence
	tick := min(p.heartbeat()/4, 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.expire(now)
			n.reportDue(now)
			if !n.bus.live() {
				continue
			}
			p.mu.Lock()
			sync := !p.synced
			wanted := p.wanted || sync
			p.synced, p.wanted = true, false
			if p.hooks != nil && p.hooks.warmAt.IsZero() {
				// The others answer the sync at once: after a heartbeat this
				// node knows their members, channels and ages.
				p.hooks.warmAt = now.Add(p.heartbeat())
			}
			p.mu.Unlock()
			if sync {
				n.sendPresence(kindSync, struct{}{})
			}
			if wanted || now.Sub(last) >= p.heartbeat() {
				last = now
				n.presenceRound(ctx)
			}
		}
	}
}

// resyncPresence asks the other nodes for their state again: notes were
// lost while the broker was away.
func (p *presence) resync() {
	p.mu.Lock()
	p.synced = false
	p.mu.Unlock()
}

// presenceRound sends this node's members of every presence channel, a
// note at a time, each built and sent under p.mu so that no delta can
// pass a state older than itself; then the beat. It waits while the bus's
// queue is more than half full, for the round is not urgent.
func (n *Node) presenceRound(ctx context.Context) {
	p := n.presence
	p.mu.Lock()
	p.round++
	round := p.round
	names := slices.Sorted(maps.Keys(p.local))
	var carried []string
	var since int64
	if p.hooks != nil {
		carried = slices.Sorted(maps.Keys(p.hooks.carried))
		since = p.hooks.since
	}
	p.mu.Unlock()
	sent := 0
	for len(names) > 0 || len(carried) > 0 {
		for len(n.bus.queue) > sendQueue/2 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		p.mu.Lock()
		if len(names) > 0 {
			names = n.stateNotesLocked(round, names, &sent)
		} else {
			carried = n.carriedNoteLocked(round, carried, &sent)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	n.sendPresence(kindBeat, beatNote{Round: round, Notes: sent, Since: since})
	p.mu.Unlock()
}

// carriedNoteLocked sends, in one state note, the first of names that
// this node still carries, as many as the note holds, and returns the
// rest; sent counts as in stateNotesLocked. p.mu is held.
func (n *Node) carriedNoteLocked(round uint64, names []string, sent *int) []string {
	note := stateNote{Round: round, Parts: []statePart{}}
	size := 0
	for len(names) > 0 && size < stateNoteBytes {
		if _, ok := n.presence.hooks.carried[names[0]]; ok {
			note.Carried = append(note.Carried, names[0])
			size += len(names[0]) + 3
		}
		names = names[1:]
	}
	n.countSent(n.bus.send(kindState, note), sent)
	return names
}

// countSent counts a state note in sent, or marks the round incomplete
// (-1) when it could not be sent.
func (n *Node) countSent(err error, sent *int) {
	if err != nil {
		*sent = -1
	} else if *sent >= 0 {
		*sent++
	}
}

// stateNotesLocked sends the state of the first channels of names, as
// much as one note holds (a big channel in as many notes as it takes), and
// returns the rest; sent counts the notes, -1 once one could not be sent.
// p.mu is held.
func (n *Node) stateNotesLocked(round uint64, names []string, sent *int) []string {
	p := n.presence
	note := stateNote{Round: round}
	size := 0
	flush := func() {
		n.countSent(n.bus.send(kindState, note), sent)
		note.Parts, size = nil, 0
	}
	for len(names) > 0 && size < stateNoteBytes {
		channel := names[0]
		names = names[1:]
		part := statePart{Channel: channel, Members: []Member{}}
		if set := p.local[channel]; set != nil {
			part.Truncated = len(set.refused) > 0
			for _, m := range set.members {
				mb := memberBytes(m)
				if size+mb > stateNoteBytes && len(part.Members) > 0 {
					part.More = true
					note.Parts = append(note.Parts, part)
					flush()
					part = statePart{Channel: channel, Part: part.Part + 1, Truncated: part.Truncated}
				}
				part.Members = append(part.Members, m)
				size += mb
			}
		}
		note.Parts = append(note.Parts, part)
		size += len(channel) + 32
	}
	flush()
	return names
}
