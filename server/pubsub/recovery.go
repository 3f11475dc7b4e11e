package pubsub

import "github.com/fanout-ws/fanout/frame"

// Recovery: what a subscriber missed is given back from the broker's
// history, at subscribe (replay, for a client resuming with since) and
// after a hole in the deliveries (Node.catchUp). What history cannot give
// back is told with a gap notice, built here only:
//
//	{"type":"gap","channel":"a","since":12,"first":15,"reason":"..."}
//
// since is the last offset the client had, first the next one it gets;
// a notice with epoch tells that offsets went back (a reset): the client
// adopts the epoch and counts from first again.

// The reasons of gap notices.
const (
	gapEpoch       = "epoch changed: the channel's history restarted (server or broker restart, or expiry); offsets restart at first"
	gapAhead       = "since is ahead of the channel's offset; offsets continue at first"
	gapLost        = "history does not reach back to since; messages before first are lost"
	gapUnavailable = "messages may be lost: the broker's history is unavailable"
)

// gapFor returns why a subscriber that has had everything up to since
// cannot simply continue with first, the oldest message of top's history
// it gets: "" when it can; with the epoch to adopt when offsets went back.
func gapFor(since, top Position, first uint64) (reason, epoch string) {
	switch {
	case since.Epoch != "" && since.Epoch != top.Epoch:
		return gapEpoch, top.Epoch
	case since.Offset > top.Offset:
		return gapAhead, top.Epoch
	case first > since.Offset+1:
		return gapLost, ""
	}
	return "", ""
}

// gapFrame is a gap notice; first is nil when it is not known.
func gapFrame(channel string, since uint64, first *uint64, epoch, reason string) *frame.Prepared {
	return replyFrame(reply{Type: "gap", Channel: channel, Since: &since, First: first, Epoch: epoch, Reason: reason})
}

// replayFrom returns the offset after which a subscriber at since can
// replay top's history: since's, unless offsets went back.
func replayFrom(since, top Position) uint64 {
	if reason, _ := gapFor(since, top, since.Offset+1); reason != "" {
		return 0
	}
	return since.Offset
}

// replay appends to frames what a subscriber at since missed of kept
// (messages after replayFrom's offset, oldest first): a gap notice if they
// cannot cover it all, then the messages, at most half of
// Config.SendQueueBytes of them (the newest).
func (n *Node) replay(name string, since, top Position, kept []Message, frames []*frame.Prepared) []*frame.Prepared {
	budget := n.sendQueueBytes / 2
	for i := len(kept) - 1; i >= 0; i-- { // trimmed before any frame is built
		if budget -= envelopeBytes(name, kept[i].Data); budget < 0 {
			kept = kept[i+1:]
			break
		}
	}
	first := top.Offset + 1 // the oldest offset sent
	if len(kept) > 0 {
		first = kept[0].Offset
	}
	if reason, epoch := gapFor(since, top, first); reason != "" {
		frames = append(frames, gapFrame(name, since.Offset, &first, epoch, reason))
	}
	for _, m := range kept {
		frames = append(frames, messageFrame(m))
	}
	return frames
}
