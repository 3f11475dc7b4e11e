package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/nats-io/nats.go/jetstream"
)

// History returns channel's position and the kept messages after after,
// oldest first, up to limit: a read, which marks the channel as one with
// subscribers.
func (b *Broker) History(ctx context.Context, channel string, after uint64, limit int) (pubsub.Position, []pubsub.Message, error) {
	s, err := b.conn()
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	epoch, err := b.epoch(ctx, s, channel, false)
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	subj := b.subject("ch", channel)
	top := pubsub.Position{Epoch: epoch}
	prev, err := last(ctx, s.msgs, subj)
	if err != nil || prev == nil {
		return top, nil, err
	}
	if m, ok := parse(channel, prev.Header, nil); ok && m.Epoch == epoch {
		top.Offset = m.Offset
	}
	if limit <= 0 || b.size <= 0 || top.Offset <= after {
		return top, nil, nil
	}
	var msgs []pubsub.Message
	for seq := uint64(1); seq <= prev.Sequence && len(msgs) < limit; seq++ {
		raw, err := s.msgs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return pubsub.Position{}, nil, err
		}
		seq = raw.Sequence
		if m, ok := parse(channel, raw.Header, raw.Data); ok && m.Epoch == epoch && m.Offset > after {
			msgs = append(msgs, m)
		}
	}
	return top, msgs, nil
}

// Release marks channel idle: at the channel cap, an idle channel without
// history makes room for a new one.
func (b *Broker) Release(ctx context.Context, channel string) error {
	if _, err := b.conn(); err != nil {
		return err
	}
	_, err := b.js.Publish(ctx, b.subject("idle", channel), nil)
	return err
}

// epoch returns channel's epoch, starting the channel (within the caps) if
// it has none, and refreshes its records: a publish keeps an unread
// channel unread, a read makes it read and not idle.
func (b *Broker) epoch(ctx context.Context, s *streams, channel string, byPublish bool) (string, error) {
	rec, err := last(ctx, s.chans, b.subject("chan", channel))
	if err != nil {
		return "", err
	}
	if rec == nil {
		if rec, err = b.newChannel(ctx, s, channel, byPublish); err != nil {
			return "", err
		}
	}
	epoch, unread, _ := strings.Cut(string(rec.Data), " ")
	fresh := time.Since(rec.Time) < b.ttl/4 // refreshed lately: its expiry is far enough
	switch {
	case !byPublish && unread != "":
		_ = s.unread.Purge(ctx, jetstream.WithPurgeSubject(b.subject("unread", channel)))
		_ = s.idle.Purge(ctx, jetstream.WithPurgeSubject(b.subject("idle", channel)))
		_, err = b.js.Publish(ctx, b.subject("chan", channel), []byte(epoch)) // read: no longer unread
	case !byPublish:
		_ = s.idle.Purge(ctx, jetstream.WithPurgeSubject(b.subject("idle", channel)))
		_, err = b.js.Publish(ctx, b.subject("chan", channel), rec.Data) // use: expires a TTL from now
	case fresh: // a publish on a channel refreshed lately: nothing to write
	case unread != "":
		if _, err = b.js.Publish(ctx, b.subject("unread", channel), nil); err == nil {
			_, err = b.js.Publish(ctx, b.subject("chan", channel), rec.Data)
		}
	default:
		_, err = b.js.Publish(ctx, b.subject("chan", channel), rec.Data)
	}
	return epoch, err
}

// newChannel starts channel in a new epoch within the channel caps.
func (b *Broker) newChannel(ctx context.Context, s *streams, channel string, byPublish bool) (*jetstream.RawStreamMsg, error) {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if byPublish {
		info, err := s.unread.Info(ctx)
		if err != nil {
			return nil, err
		}
		if n := pubsub.MaxUnreadChannels(b.maxChannels); info.State.Msgs >= uint64(n) {
			return nil, fmt.Errorf("%w: %d without subscribers", pubsub.ErrTooManyChannels, n)
		}
	}
	info, err := s.chans.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs >= uint64(b.maxChannels) {
		if ok, err := b.evictIdle(ctx, s); err != nil || !ok {
			return nil, cmpErr(err, fmt.Errorf("%w (%d)", pubsub.ErrTooManyChannels, b.maxChannels))
		}
	}
	data := pubsub.NewEpoch()
	if byPublish {
		data += " unread"
		if _, err := b.js.Publish(ctx, b.subject("unread", channel), nil); err != nil {
			return nil, err
		}
	}
	subj := b.subject("chan", channel)
	_, err = b.js.Publish(ctx, subj, []byte(data), jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return nil, err
	}
	return s.chans.GetLastMsgForSubject(ctx, subj) // ours, or another node's made meanwhile
}

// evictIdle forgets one idle channel without history, making room for a
// new one; idle channels with history stop being candidates.
func (b *Broker) evictIdle(ctx context.Context, s *streams) (bool, error) {
	for range 100 {
		rec, err := s.idle.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(b.tok+".idle.*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		k := strings.TrimPrefix(rec.Subject, b.tok+".idle.")
		if err := s.idle.Purge(ctx, jetstream.WithPurgeSubject(rec.Subject)); err != nil {
			return false, err
		}
		hist, err := last(ctx, s.msgs, b.tok+".ch."+k)
		if err != nil {
			return false, err
		}
		if hist != nil {
			continue
		}
		if err := s.chans.Purge(ctx, jetstream.WithPurgeSubject(b.tok+".chan."+k)); err != nil {
			return false, err
		}
		return true, s.unread.Purge(ctx, jetstream.WithPurgeSubject(b.tok+".unread."+k))
	}
	return false, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}
