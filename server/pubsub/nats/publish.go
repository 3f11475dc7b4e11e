package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publishing: a node remembers, per channel it publishes to, the epoch and
// the subject's last sequence and offset, so that a publish is one
// JetStream round trip while nobody else publishes to the channel; a
// publish that finds another publisher took its offset (the expected last
// sequence is wrong) reads them again and tries again. One channel's
// publishes from this node go one at a time; different channels' go
// concurrently, a batch's too.

// maxRaces bounds how often a publish reads the subject's last message
// again after another publisher took the offset it tried.
const maxRaces = 100

// pubState is what this node knows of one channel it publishes to.
type pubState struct {
	mu      sync.Mutex
	epoch   string    // "" until read
	fresh   time.Time // when the channel's record was last refreshed from here
	known   bool      // seq and offset are the subject's last
	seq     uint64
	offset  uint64
	touched time.Time // for forgetting states unused for the history TTL
}

// state returns channel's publish state, made if need be; it forgets the
// states unused for the history TTL on the way.
func (b *Broker) state(channel string) *pubState {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	now := time.Now()
	if len(b.pubs) > 1024 && now.Sub(b.pubSwept) > b.ttl {
		for c, st := range b.pubs {
			if st.mu.TryLock() {
				if now.Sub(st.touched) > b.ttl {
					delete(b.pubs, c)
				}
				st.mu.Unlock()
			}
		}
		b.pubSwept = now
	}
	st := b.pubs[channel]
	if st == nil {
		st = &pubState{}
		b.pubs[channel] = st
	}
	return st
}

// forgetStates drops what this node knows of every channel: after a
// reconnection the server may have lost its data.
func (b *Broker) forgetStates() {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	clear(b.pubs)
}

// Publish appends data to channel's stream subject at its next offset.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (pubsub.Position, error) {
	s, err := b.conn()
	if err != nil {
		return pubsub.Position{}, err
	}
	st := b.state(channel)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.touched = time.Now()
	for range maxRaces {
		pos, err := b.publishOnce(ctx, s, st, channel, data)
		if err == nil || !errors.Is(err, errRaced) {
			return pos, err
		}
	}
	return pubsub.Position{}, fmt.Errorf("nats: %d publishers raced for %s", maxRaces, channel)
}

var errRaced = errors.New("nats: another publisher took the offset")

// publishOnce tries the next offset; st.mu is held.
func (b *Broker) publishOnce(ctx context.Context, s *streams, st *pubState, channel string, data []byte) (pubsub.Position, error) {
	if st.epoch == "" || time.Since(st.fresh) > b.ttl/4 {
		epoch, err := b.epoch(ctx, s, channel, true)
		if err != nil {
			return pubsub.Position{}, err
		}
		if epoch != st.epoch {
			st.known = false
		}
		st.epoch, st.fresh = epoch, time.Now()
	}
	subj := b.subject("ch", channel)
	if !st.known {
		prev, err := last(ctx, s.msgs, subj)
		if err != nil {
			return pubsub.Position{}, err
		}
		st.seq, st.offset = 0, 0
		if prev != nil {
			st.seq = prev.Sequence
			if m, ok := parse(channel, prev.Header, nil); ok && m.Epoch == st.epoch {
				st.offset = m.Offset
			}
		}
		st.known = true
	}
	pos := pubsub.Position{Offset: st.offset + 1, Epoch: st.epoch}
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{hdrEpoch: {pos.Epoch}, hdrOffset: {strconv.FormatUint(pos.Offset, 10)}}}
	b.publishes.Add(1)
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(st.seq))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		st.known, st.epoch = false, "" // another publisher, or a server that lost its data: read both again
		return pubsub.Position{}, errRaced
	}
	if err != nil {
		st.known, st.epoch = false, ""
		return pubsub.Position{}, err
	}
	st.seq, st.offset = ack.Sequence, pos.Offset
	return pos, nil
}

// PublishBatch publishes msgs, each channel's in order, the channels
// concurrently.
func (b *Broker) PublishBatch(ctx context.Context, msgs []pubsub.Message) ([]pubsub.Position, []error) {
	return pubsub.PublishByChannel(ctx, msgs, b.Publish)
}
