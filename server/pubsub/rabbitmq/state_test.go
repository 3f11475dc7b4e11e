package rabbitmq

import (
	"fmt"
	"testing"
	"time"
)

// Every node applies the same proposals in the same order: the first
// proposal for an offset wins, a later one for the same offset or from a
// stale epoch is rejected, and a channel unused for the TTL adopts the
// epoch of its next proposal.
func TestState_Apply(t *testing.T) {
	s := newState(time.Minute, 10, 1<<20)
	steps := []struct {
		name       string
		p          proposal
		accepted   bool
		wantEpoch  string
		wantOffset uint64
	}{
		{"first publish starts the epoch", proposal{kind: kindPublish, epoch: "a", offset: 1, at: 1000}, true, "a", 1},
		{"a rival for offset 1 loses", proposal{kind: kindPublish, epoch: "b", offset: 1, at: 1001}, false, "a", 1},
		{"the same offset again loses", proposal{kind: kindPublish, epoch: "a", offset: 1, at: 1002}, false, "a", 1},
		{"a hole is refused", proposal{kind: kindPublish, epoch: "a", offset: 3, at: 1003}, false, "a", 1},
		{"the next offset wins", proposal{kind: kindPublish, epoch: "a", offset: 2, at: 1004}, true, "a", 2},
		{"a touch of another epoch changes nothing", proposal{kind: kindTouch, epoch: "z", at: 1005}, false, "a", 2},
		{"after the TTL a new epoch is adopted", proposal{kind: kindPublish, epoch: "c", offset: 1, at: 1004 + 60_001}, true, "c", 1},
	}
	for _, st := range steps {
		st.p.channel = "ch"
		got, accepted := s.apply(&st.p)
		if accepted != st.accepted || got.epoch != st.wantEpoch || got.offset != st.wantOffset {
			t.Fatalf("%s: accepted %v, state %s/%d; want %v, %s/%d", st.name, accepted, got.epoch, got.offset, st.accepted, st.wantEpoch, st.wantOffset)
		}
	}
	if top, msgs := s.history("ch", s.chans["ch"], 0, 10, 61_010); top.Epoch != "c" || len(msgs) != 1 {
		t.Fatalf("history after the new epoch: %+v, %d messages, want only the new epoch's", top, len(msgs))
	}
}

// History is bounded per channel and by the node's byte budget: the
// oldest messages go first.
func TestState_HistoryBounds(t *testing.T) {
	const size, budget = 5, 10 * (100 + entryOverhead)
	s := newState(time.Hour, size, budget)
	data := make([]byte, 100)
	for ch := range 4 {
		for off := uint64(1); off <= 8; off++ {
			s.apply(&proposal{kind: kindPublish, channel: fmt.Sprint(ch), epoch: "e", offset: off, at: 1000, data: data})
			if s.bytes > budget {
				t.Fatalf("history holds %d bytes, budget %d", s.bytes, budget)
			}
		}
	}
	kept := 0
	for ch := range 4 {
		st := s.chans[fmt.Sprint(ch)]
		if len(st.hist) > size {
			t.Fatalf("channel %d keeps %d messages, size %d", ch, len(st.hist), size)
		}
		kept += len(st.hist)
	}
	last := s.chans["3"]
	if kept > 10 || len(last.hist) != size || last.hist[size-1].offset != 8 {
		t.Fatalf("kept %d messages, the newest channel %d up to %d", kept, len(last.hist), last.hist[len(last.hist)-1].offset)
	}
	if _, msgs := s.history("0", s.chans["0"], 0, 10, 1000); len(msgs) != 0 {
		t.Fatalf("the oldest channel still has %d messages", len(msgs))
	}
}

func TestProposal_Decode(t *testing.T) {
	p := proposal{kind: kindPublish, node: "n1", seq: 7, epoch: "e", offset: 3, at: 12345, channel: "a:b/c", data: []byte(`{"x":"1 2\n"}`)}
	got, ok := decode(p.encode())
	if !ok || got.kind != p.kind || got.node != p.node || got.seq != 7 || got.epoch != "e" || got.offset != 3 || got.at != 12345 ||
		got.channel != p.channel || string(got.data) != string(p.data) {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	for _, bad := range []string{`{"json":1}`, "\x00fo1 p n 1 e 0 1 c\n1", "\x00fo1 x n 1 e 1 1 c\n1", "\x00fo1 p n 1 e 1 c\n1", "\x00fo1 p n one e 1 1 c\n1"} {
		if _, ok := decode([]byte(bad)); ok {
			t.Fatalf("decoded %q", bad)
		}
	}
}

// A channel made by a publish counts as unread until a touch (a node's
// subscriber read) marks it, and leaves the count when it expires.
func TestState_Unread(t *testing.T) {
	s := newState(time.Minute, 10, 1<<20)
	steps := []struct {
		name string
		p    proposal
		want int
	}{
		{"a publish makes an unread channel", proposal{kind: kindPublish, channel: "a", epoch: "e", offset: 1, at: 1000}, 1},
		{"a touch makes a read one", proposal{kind: kindTouch, channel: "b", epoch: "f", at: 1000}, 1},
		{"a touch marks a read", proposal{kind: kindTouch, channel: "a", epoch: "e", offset: 1, at: 1001}, 0},
		{"a publish after the TTL makes it unread again", proposal{kind: kindPublish, channel: "a", epoch: "g", offset: 1, at: 62_000}, 1},
		{"another publish makes another", proposal{kind: kindPublish, channel: "c", epoch: "h", offset: 1, at: 62_000}, 2},
	}
	for _, st := range steps {
		if s.apply(&st.p); s.unread != st.want {
			t.Fatalf("%s: %d unread, want %d", st.name, s.unread, st.want)
		}
	}
	if s.sweep(200_000, 0); s.unread != 0 || len(s.chans) != 0 {
		t.Fatalf("after the sweep: %d unread of %d channels, want none", s.unread, len(s.chans))
	}
}

// A snapshot replaces the state: a channel in the same epoch keeps its
// history up to the snapshot's offset, one in another epoch starts without
// history, one the snapshot lacks is forgotten, and unread is recounted.
func TestState_Install(t *testing.T) {
	s := newState(time.Minute, 10, 1<<20)
	for _, p := range []proposal{
		{kind: kindPublish, channel: "same", epoch: "e", offset: 1, at: 1000},
		{kind: kindPublish, channel: "same", epoch: "e", offset: 2, at: 1000},
		{kind: kindPublish, channel: "other", epoch: "mine", offset: 1, at: 1000},
		{kind: kindPublish, channel: "gone", epoch: "g", offset: 1, at: 1000},
	} {
		s.apply(&p)
	}
	snap, err := parseSnapshot("same e 1 1000 false false\nother theirs 7 1000 true false\n")
	if err != nil {
		t.Fatal(err)
	}
	s.install(snap)
	same, other := s.chans["same"], s.chans["other"]
	switch {
	case len(s.chans) != 2 || same == nil || other == nil:
		t.Fatalf("channels after the snapshot: %v", s.chans)
	case same.offset != 1 || len(same.hist) != 1 || same.hist[0].offset != 1:
		t.Fatalf("same epoch: offset %d, %d kept, want 1 and its history up to 1", same.offset, len(same.hist))
	case other.epoch != "theirs" || other.offset != 7 || len(other.hist) != 0 || !other.read:
		t.Fatalf("other epoch: %+v, want theirs at 7, read, without history", other)
	case s.unread != 1:
		t.Fatalf("%d unread, want 1", s.unread)
	}
	if st, accepted := s.apply(&proposal{kind: kindPublish, channel: "other", epoch: "theirs", offset: 8, at: 1001}); !accepted || st.offset != 8 {
		t.Fatalf("the next publish after the snapshot: %v at %d", accepted, st.offset)
	}
	for _, bad := range []string{"a e 1 1000 true\n", "a e x 1000 true false\n", "a e 1 1000 yes false\n"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Fatalf("parsed %q", bad)
		}
	}
}
