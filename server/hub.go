package server

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// hubShardFDs is how many fd slots one flush task covers: large enough that
// a broadcast costs few task hand-offs, small enough to spread one broadcast
// over every core.
const hubShardFDs = 256

// Hub is a set of connections that receive the same broadcasts (a room or
// a channel). Members are grouped in shards by fd range; a shard exists only
// once one of its fds joins, so an empty hub costs a few hundred bytes and a
// hub of k members O(k). Broadcast serializes a message once and hands one
// flush task per non-empty shard to the write pool; each flush writes every
// member's share of pending frames with one writev. Safe for concurrent use.
type Hub struct {
	s      *Server
	shards []atomic.Pointer[hubShard] // by fd / hubShardFDs
	count  atomic.Int64               // members with a socket
	refs   atomic.Int64               // conns that joined and have not left
	drops  atomic.Uint64
}

type hubShard struct {
	h *Hub

	mu sync.Mutex
	// members is replaced, not modified in place, while a flush may be
	// iterating it (scheduled); otherwise only mu's holder sees it.
	members   []*Conn
	pending   []*frame.Prepared // frames waiting for this shard's flush
	pendBytes int
	pendSince time.Time // when pending last went from empty to non-empty
	spare     []*frame.Prepared
	scheduled bool // a flush task owns the shard
}

// NewHub returns an empty hub whose broadcasts run on s's write pool.
func (s *Server) NewHub() *Hub {
	h := &Hub{s: s, shards: make([]atomic.Pointer[hubShard], (s.fdLimit+hubShardFDs-1)/hubShardFDs)}
	s.mu.Lock()
	s.hubs[h] = struct{}{}
	s.mu.Unlock()
	return h
}

// Join adds c to h; c leaves every hub when it closes. Joining from
// OnConnect is allowed: broadcasts then queue behind the 101.
func (h *Hub) Join(c *Conn) error {
	c.mu.Lock()
	if c.state >= stateClosing {
		c.mu.Unlock()
		return ErrNotOpen
	}
	for _, j := range c.hubs {
		if j == h {
			c.mu.Unlock()
			return nil
		}
	}
	c.hubs = append(c.hubs, h)
	h.refs.Add(1)
	tracked := c.sock.fd >= 0 && h.s.conns[c.sock.fd].Load() == c
	c.mu.Unlock()
	if tracked {
		h.add(c)
	}
	return nil
}

// Leave removes c from h.
func (h *Hub) Leave(c *Conn) {
	c.mu.Lock()
	for i, j := range c.hubs {
		if j == h {
			c.hubs = append(c.hubs[:i], c.hubs[i+1:]...)
			h.refs.Add(-1)
			break
		}
	}
	c.mu.Unlock()
	h.remove(c)
}

// Len is the number of members with a socket.
func (h *Hub) Len() int { return int(h.count.Load()) }

// Joined is the number of connections that joined h and have not left or
// closed, counting those that joined from OnConnect and have no socket yet
// (Handler): Joined() == 0 means nobody can still become a member.
func (h *Hub) Joined() int { return int(h.refs.Load()) }

// Release forgets an empty hub that will not be used again, so Shutdown no
// longer drains it. A hub that is never released lives as long as its
// server.
func (h *Hub) Release() {
	h.s.mu.Lock()
	delete(h.s.hubs, h)
	h.s.mu.Unlock()
}

// Drops counts frames a shard refused because its flush fell more than
// Config.HubBacklogBytes behind.
func (h *Hub) Drops() uint64 { return h.drops.Load() }

func (h *Hub) add(c *Conn) {
	slot := &h.shards[int(c.sock.fd)/hubShardFDs]
	sh := slot.Load()
	if sh == nil {
		slot.CompareAndSwap(nil, &hubShard{h: h})
		sh = slot.Load()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if slices.Contains(sh.members, c) {
		return
	}
	if sh.scheduled {
		sh.members = slices.Clip(sh.members) // append copies: the flush keeps its view
	}
	sh.members = append(sh.members, c)
	h.count.Add(1)
}

func (h *Hub) remove(c *Conn) {
	fd := int(c.sock.fd)
	if fd < 0 {
		return
	}
	sh := h.shards[fd/hubShardFDs].Load()
	if sh == nil {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := slices.Index(sh.members, c)
	if i < 0 {
		return
	}
	last := len(sh.members) - 1
	if sh.scheduled {
		sh.members = slices.Delete(slices.Clone(sh.members), i, i+1)
	} else {
		sh.members[i] = sh.members[last]
		sh.members[last] = nil
		sh.members = sh.members[:last]
	}
	h.count.Add(-1)
}

// Broadcast sends one message to every member. The frame is built once.
func (h *Hub) Broadcast(op frame.OpCode, data []byte) {
	h.BroadcastPrepared(frame.NewPrepared(op, data))
}

// BroadcastPrepared sends p to every member. It never blocks on a socket.
func (h *Hub) BroadcastPrepared(p *frame.Prepared) {
	size := p.Len()
	h.s.stats.broadcasts.Add(1)
	for i := range h.shards {
		sh := h.shards[i].Load()
		if sh == nil {
			continue
		}
		sh.mu.Lock()
		if len(sh.members) == 0 {
			sh.mu.Unlock()
			continue
		}
		if sh.pendBytes+size > h.s.cfg.HubBacklogBytes {
			sh.mu.Unlock()
			h.drops.Add(1)
			h.s.stats.broadcastDrops.Add(1)
			continue
		}
		if len(sh.pending) == 0 {
			sh.pendSince = time.Now()
		}
		sh.pending = append(sh.pending, p)
		sh.pendBytes += size
		start := !sh.scheduled
		sh.scheduled = true
		sh.mu.Unlock()
		if start {
			h.s.dispatchWrite(sh)
		}
	}
}

// flush delivers the shard's pending frames to each member, oldest first,
// until nothing is pending. Only the task that set scheduled runs it.
func (sh *hubShard) flush(w *writer) {
	for {
		sh.mu.Lock()
		batch := sh.pending
		if len(batch) == 0 {
			sh.scheduled = false
			sh.mu.Unlock()
			return
		}
		sh.pending, sh.spare = sh.spare[:0], nil
		sh.pendBytes = 0
		since := sh.pendSince
		members := sh.members
		sh.mu.Unlock()

		for i := 0; i < len(batch); i += iovMax {
			chunk := batch[i:min(i+iovMax, len(batch))]
			w.plain = w.plain[:0]
			for _, p := range chunk {
				w.plain = append(w.plain, p.Bytes())
			}
			for _, c := range members {
				_ = c.writeFrames(w, c.frameList(w, chunk), false)
			}
		}
		clear(w.plain)
		clear(w.sel)
		sh.h.s.metrics.fanout.Observe(time.Since(since).Seconds())
		clear(batch)
		sh.mu.Lock()
		sh.spare = batch[:0]
		sh.mu.Unlock()
	}
}

// drain flushes every shard on the calling goroutine, waiting for running
// flush tasks, so that what was broadcast is queued on every connection.
func (h *Hub) drain() {
	w := writers.Get().(*writer)
	defer writers.Put(w)
	defer h.s.flushStats(w)
	for i := range h.shards {
		sh := h.shards[i].Load()
		for sh != nil {
			sh.mu.Lock()
			if sh.scheduled {
				sh.mu.Unlock()
				time.Sleep(time.Millisecond) // a flush task owns it; it ends when pending is empty
				continue
			}
			if len(sh.pending) == 0 {
				sh.mu.Unlock()
				break
			}
			sh.scheduled = true
			sh.mu.Unlock()
			sh.flush(w)
		}
	}
}
