package pubsub

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// MemoryBroker is the in-process Broker, what a Node uses when
// Config.Broker is nil: offsets and history live in this process's memory,
// and a publish is delivered to every Node that runs on it (usually one)
// before Publish returns. Safe for concurrent use.
type MemoryBroker struct {
	size int
	ttl  time.Duration
	max  int

	mu     sync.RWMutex
	chans  map[string]*memChannel
	nodes  map[*func(Message)]struct{}
	nodeMu sync.RWMutex
}

// memChannel is one channel's stream. pubMu orders its publishes and their
// delivery; histMu guards the stream for readers, and is never held while
// taking another lock, so a node may read history under its own channel
// lock while a publish waits to deliver to it.
type memChannel struct {
	pubMu  sync.Mutex
	dead   bool // swept: look the name up again (pubMu)
	histMu sync.RWMutex
	epoch  string
	offset uint64
	last   time.Time // of the last publish or history read
	hist   history
}

// BrokerOptions tunes a broker.
type BrokerOptions struct {
	// HistorySize and HistoryTTL bound each channel's history, as in
	// Config, whose zero values take the broker's (HistoryLimits). Zero
	// means the defaults; a negative size keeps no history.
	HistorySize int
	HistoryTTL  time.Duration
	// MaxChannels caps the channels a MemoryBroker keeps. Zero means
	// DefaultMaxChannels.
	MaxChannels int
	// Prefix starts every key and topic of a Redis broker. Zero means
	// "fanout:".
	Prefix string
	// Logger receives a Redis broker's reconnection logs. Nil discards them.
	Logger *slog.Logger
}

// NewMemoryBroker returns an empty in-process broker.
func NewMemoryBroker(o BrokerOptions) *MemoryBroker {
	return &MemoryBroker{
		size:  cmp.Or(o.HistorySize, DefaultHistorySize),
		ttl:   cmp.Or(o.HistoryTTL, DefaultHistoryTTL),
		max:   cmp.Or(o.MaxChannels, DefaultMaxChannels),
		chans: make(map[string]*memChannel),
		nodes: make(map[*func(Message)]struct{}),
	}
}

// HistoryLimits reports the history each channel keeps.
func (b *MemoryBroker) HistoryLimits() (size int, ttl time.Duration) { return b.size, b.ttl }

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

// channel returns name's stream, created if need be.
func (b *MemoryBroker) channel(name string) (*memChannel, error) {
	b.mu.RLock()
	ch := b.chans[name]
	b.mu.RUnlock()
	if ch != nil {
		return ch, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch = b.chans[name]; ch == nil {
		if len(b.chans) >= b.max {
			return nil, fmt.Errorf("%w (%d)", ErrTooManyChannels, b.max)
		}
		ch = &memChannel{epoch: NewEpoch(), last: time.Now()}
		b.chans[name] = ch
	}
	return ch, nil
}

// Publish appends data to channel and delivers it to every node before it
// returns.
func (b *MemoryBroker) Publish(_ context.Context, channel string, data []byte) (Position, error) {
	for {
		ch, err := b.channel(channel)
		if err != nil {
			return Position{}, err
		}
		ch.pubMu.Lock()
		if ch.dead {
			ch.pubMu.Unlock()
			continue
		}
		now := time.Now()
		ch.histMu.Lock()
		ch.offset++
		ch.last = now
		m := Message{Channel: channel, Position: Position{Offset: ch.offset, Epoch: ch.epoch}, Data: data}
		if b.size > 0 {
			ch.hist.push(histEntry{offset: m.Offset, at: now.UnixNano(), data: data}, b.size)
		}
		ch.histMu.Unlock()
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
// after that are younger than the TTL.
func (b *MemoryBroker) History(_ context.Context, channel string, after uint64, limit int) (Position, []Message, error) {
	ch, err := b.channel(channel)
	if err != nil {
		return Position{}, nil, err
	}
	ch.histMu.Lock() // also refreshes last
	defer ch.histMu.Unlock()
	ch.last = time.Now()
	top := Position{Offset: ch.offset, Epoch: ch.epoch}
	if limit <= 0 {
		return top, nil, nil
	}
	var msgs []Message
	for _, e := range ch.hist.after(after, ch.last.Add(-b.ttl).UnixNano()) {
		if len(msgs) == limit {
			break
		}
		msgs = append(msgs, Message{Channel: channel, Position: Position{Offset: e.offset, Epoch: ch.epoch}, Data: e.data})
	}
	return top, msgs, nil
}

// sweep drops expired history and forgets channels unused for the TTL:
// their next message starts a new epoch.
func (b *MemoryBroker) sweep(now time.Time) {
	cutoff := now.Add(-b.ttl)
	b.mu.RLock()
	chans := maps.Clone(b.chans)
	b.mu.RUnlock()
	for name, ch := range chans {
		// b.mu is not held here: a publish holds pubMu while it delivers,
		// and delivery may wait for a node that is reading history.
		ch.pubMu.Lock()
		ch.histMu.Lock()
		ch.hist.expire(cutoff.UnixNano())
		ch.dead = ch.hist.len() == 0 && ch.last.Before(cutoff)
		ch.histMu.Unlock()
		ch.pubMu.Unlock()
		if ch.dead {
			b.mu.Lock()
			delete(b.chans, name)
			b.mu.Unlock()
		}
	}
}
