package pubsub

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryBroker is the in-process Broker, what a Node uses when
// Config.Broker is nil: offsets and history live in this process's memory,
// and a publish is delivered to every Node that runs on it (usually one)
// before Publish returns. Safe for concurrent use.
//
// Lock order: a channel's pubMu, then histMu or nodeMu (and, delivering,
// a node's channel lock). mu is taken alone, or before a pubMu only with
// TryLock (evictIdle): a delivery may wait on a node that reads history,
// which takes mu.
type MemoryBroker struct {
	ttl       time.Duration
	max       int
	maxUnread int

	mu     sync.RWMutex
	chans  map[string]*memChannel
	unread int                    // channels in chans made by a publish and not read since (mu)
	idle   map[string]*memChannel // released by a node (Release), not read since (mu)

	// histMu guards every channel's stream (epoch, offset, last, hist) and
	// the history they share; it is never held while taking another lock,
	// so a node may read history under its own channel lock while a
	// publish waits to deliver to it.
	histMu sync.Mutex
	hist   history

	nodes  map[*func(Message)]struct{}
	nodeMu sync.RWMutex
}

// memChannel is one channel's stream. pubMu orders its publishes and their
// delivery.
type memChannel struct {
	pubMu  sync.Mutex
	dead   bool        // swept: look the name up again (pubMu)
	unread atomic.Bool // made by a publish, not read since: counted in unread
	idle   atomic.Bool // released, not read since: in idle

	epoch  string
	offset uint64
	last   time.Time // of the last publish or history read
	hist   entryList // this channel's kept messages, oldest first
}

// NewMemoryBroker returns an empty in-process broker.
func NewMemoryBroker(o BrokerOptions) *MemoryBroker {
	o = o.WithDefaults()
	b := &MemoryBroker{
		ttl:   o.HistoryTTL,
		max:   o.MaxChannels,
		chans: make(map[string]*memChannel),
		idle:  make(map[string]*memChannel),
		nodes: make(map[*func(Message)]struct{}),
		hist:  history{size: o.HistorySize, maxBytes: o.HistoryMaxBytes},
	}
	b.maxUnread = MaxUnreadChannels(b.max)
	return b
}

// HistoryLimits reports the history each channel keeps.
func (b *MemoryBroker) HistoryLimits() (size int, ttl time.Duration) { return b.hist.size, b.ttl }

// Ready is always true.
func (b *MemoryBroker) Ready() bool { return true }

// Start registers deliver before it returns, then expires history once a
// second until ctx is done.
func (b *MemoryBroker) Start(ctx context.Context, deliver func(Message), _ func()) <-chan struct{} {
	b.nodeMu.Lock()
	b.nodes[&deliver] = struct{}{}
	b.nodeMu.Unlock()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer func() {
			b.nodeMu.Lock()
			delete(b.nodes, &deliver)
			b.nodeMu.Unlock()
		}()
		everySecond(ctx, func() { b.sweep(time.Now()) })
	}()
	return stopped
}

// channel returns name's stream, created if need be: by a publish, or by a
// read.
func (b *MemoryBroker) channel(name string, byPublish bool) (*memChannel, error) {
	b.mu.RLock()
	ch := b.chans[name]
	b.mu.RUnlock()
	if ch != nil {
		return ch, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch = b.chans[name]; ch != nil {
		return ch, nil
	}
	switch {
	case len(b.chans) >= b.max && !b.evictIdle():
		return nil, fmt.Errorf("%w (%d)", ErrTooManyChannels, b.max)
	case byPublish && b.unread >= b.maxUnread:
		return nil, fmt.Errorf("%w: %d without subscribers", ErrTooManyChannels, b.maxUnread)
	}
	ch = &memChannel{epoch: NewEpoch(), last: time.Now()}
	if byPublish {
		ch.unread.Store(true)
		b.unread++
	}
	b.chans[name] = ch
	return ch, nil
}

// Publish appends data to channel and delivers it to every node before it
// returns.
func (b *MemoryBroker) Publish(_ context.Context, channel string, data []byte) (Position, error) {
	for {
		ch, err := b.channel(channel, true)
		if err != nil {
			return Position{}, err
		}
		ch.pubMu.Lock()
		if ch.dead {
			ch.pubMu.Unlock()
			continue
		}
		b.histMu.Lock()
		now := time.Now()
		ch.offset++
		ch.last = now
		m := Message{Channel: channel, Position: Position{Offset: ch.offset, Epoch: ch.epoch}, Data: data}
		if b.hist.size > 0 {
			b.hist.push(&histEntry{ch: ch, offset: m.Offset, at: now.UnixNano(), data: data})
		}
		b.histMu.Unlock()
		b.nodeMu.RLock()
		for deliver := range b.nodes {
			(*deliver)(m)
		}
		b.nodeMu.RUnlock()
		ch.pubMu.Unlock()
		return m.Position, nil
	}
}

// History returns channel's position and, up to limit, the messages after
// after that are younger than the TTL. A read marks the channel as one
// with subscribers.
func (b *MemoryBroker) History(_ context.Context, channel string, after uint64, limit int) (Position, []Message, error) {
	ch, err := b.channel(channel, false)
	if err != nil {
		return Position{}, nil, err
	}
	if ch.unread.Load() || ch.idle.Load() {
		b.mu.Lock()
		if ch.unread.CompareAndSwap(true, false) {
			b.unread--
		}
		if ch.idle.CompareAndSwap(true, false) {
			delete(b.idle, channel)
		}
		b.mu.Unlock()
	}
	b.histMu.Lock() // also refreshes last
	defer b.histMu.Unlock()
	ch.last = time.Now()
	top := Position{Offset: ch.offset, Epoch: ch.epoch}
	if limit <= 0 {
		return top, nil, nil
	}
	kept := afterOffset(&ch.hist, after, ch.last.Add(-b.ttl).UnixNano(), limit)
	msgs := make([]Message, len(kept))
	for i, e := range kept {
		msgs[i] = Message{Channel: channel, Position: Position{Offset: e.offset, Epoch: ch.epoch}, Data: e.data}
	}
	return top, msgs, nil
}

// Release marks channel as one without subscribers, which evictIdle may
// forget; a channel made by a publish and not read since counts as unread
// already.
func (b *MemoryBroker) Release(_ context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch := b.chans[channel]; ch != nil && !ch.unread.Load() && ch.idle.CompareAndSwap(false, true) {
		b.idle[channel] = ch
	}
	return nil
}

// evictIdle forgets one idle channel that keeps no message, to make room
// for a new one, and reports whether it did. Idle channels that do keep
// messages stop being candidates (they count until their history
// expires). b.mu is held; a channel being published to is skipped, as
// taking its pubMu here could wait on a delivery that waits on b.mu.
func (b *MemoryBroker) evictIdle() bool {
	for name, ch := range b.idle {
		if !ch.pubMu.TryLock() {
			continue
		}
		b.histMu.Lock()
		empty := ch.hist.len == 0
		b.histMu.Unlock()
		if empty {
			ch.dead = true
			b.forget(name, ch)
		} else {
			ch.idle.Store(false)
			delete(b.idle, name)
		}
		ch.pubMu.Unlock()
		if empty {
			return true
		}
	}
	return false
}

// forget removes a dead channel, unless a newer one has its name. b.mu is
// held.
func (b *MemoryBroker) forget(name string, ch *memChannel) {
	if b.chans[name] == ch {
		delete(b.chans, name)
	}
	if ch.unread.Swap(false) {
		b.unread--
	}
	if ch.idle.Swap(false) {
		delete(b.idle, name)
	}
}

// HistoryBytes is the memory history holds now, within
// BrokerOptions.HistoryMaxBytes.
func (b *MemoryBroker) HistoryBytes() int64 {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	return b.hist.bytes
}

// sweep drops expired history and forgets channels unused for the TTL:
// their next message starts a new epoch.
func (b *MemoryBroker) sweep(now time.Time) {
	cutoff := now.Add(-b.ttl)
	b.histMu.Lock()
	b.hist.expire(cutoff.UnixNano())
	b.histMu.Unlock()
	b.mu.RLock()
	chans := maps.Clone(b.chans)
	b.mu.RUnlock()
	for name, ch := range chans {
		// b.mu is not held here: a publish holds pubMu while it delivers,
		// and delivery may wait for a node that is reading history.
		ch.pubMu.Lock()
		b.histMu.Lock()
		ch.dead = ch.dead || ch.hist.len == 0 && ch.last.Before(cutoff)
		dead := ch.dead
		b.histMu.Unlock()
		ch.pubMu.Unlock()
		if dead {
			b.mu.Lock()
			b.forget(name, ch)
			b.mu.Unlock()
		}
	}
}
