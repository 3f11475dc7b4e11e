package server

import (
	"cmp"
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

// hubPauseBytes is the backlog (frameCost-charged bytes pending or being
// flushed) past which a hub shard is behind: the hub's members stop being
// read until every shard is back under half of it. It is a lag, not a
// memory bound: about 800 small frames or two 64 KiB messages, enough for
// each flush to fill gather writes, short enough to keep latency under overload
// bounded. HubBacklogBytes, the drop bound, stays above it.
const hubPauseBytes = 128 << 10

// Hub is a set of connections that receive the same broadcasts (a room or
// a channel). Members are grouped in shards by fd range; a shard exists only
// once one of its fds joins and the hub lists only those, so a hub costs
// O(k) for k members whatever the open-files limit (about 300 B with one:
// TestHub_BytesPerChannel). Broadcast serializes a message once and appends it
// to every non-empty shard; a shard with pending frames has one flush task
// queued on the write pool, which gives each member everything pending in
// one gather write. Broadcast never writes. Safe for concurrent use.
//
// When a shard falls behind (hubPauseBytes), readers stop reading the
// hub's members (the publishers among them) until it catches up: TCP
// pushes back on the publisher instead of the hub dropping. Only a
// publisher outside the hub can push a shard to HubBacklogBytes, past
// which its broadcasts are dropped for that shard.
type Hub struct {
	s *Server
	// shards lists the shards that exist, ordered by index (fd /
	// hubShardFDs). A new shard replaces the list under shardMu; readers
	// load it without a lock.
	shards  atomic.Pointer[[]*hubShard]
	shardMu sync.Mutex
	count   atomic.Int64 // members with a socket
	refs    atomic.Int64 // conns that joined and have not left
	drops   atomic.Uint64
	behind  atomic.Int32 // shards over the pause bound

	pauseMu sync.Mutex
	paused  []*Conn // members whose reads wait for the hub to catch up
}

type hubShard struct {
	h     *Hub
	index int // fd / hubShardFDs of its members

	mu sync.Mutex
	// members is replaced, not modified in place, while a flush may be
	// iterating it (scheduled); otherwise only mu's holder sees it.
	members   []*Conn
	pending   []*frame.Prepared // frames waiting for this shard's flush
	backlog   int               // frameCost of pending and of the batch being flushed
	pendSince time.Time         // when pending last went from empty to non-empty
	spare     []*frame.Prepared
	scheduled bool          // a flush task owns the shard
	behind    bool          // backlog passed the pause bound (counted in Hub.behind)
	idle      chan struct{} // made by drain, closed when scheduled ends
}

// NewHub returns an empty hub whose broadcasts run on s's write pool.
func (s *Server) NewHub() *Hub {
	h := &Hub{s: s}
	s.mu.Lock()
	s.hubs[h] = struct{}{}
	s.mu.Unlock()
	return h
}

// Join adds c to h; c leaves every hub when it closes. Joining from
// OnConnect is allowed: broadcasts then queue behind the 101.
func (h *Hub) Join(c *Conn) error {
	c.mu.Lock()
	if c.life.current() >= stateClosing {
		c.mu.Unlock()
		return ErrNotOpen
	}
	if !c.app.join(h) {
		c.mu.Unlock()
		return nil
	}
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
	if c.app.leave(h) {
		h.refs.Add(-1)
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

// shardList returns the shards that exist, ordered by index.
func (h *Hub) shardList() []*hubShard {
	if l := h.shards.Load(); l != nil {
		return *l
	}
	return nil
}

// shard returns the shard of fd, or nil if it does not exist.
func (h *Hub) shard(fd int) *hubShard {
	l := h.shardList()
	if i, ok := slices.BinarySearchFunc(l, fd/hubShardFDs, compareShard); ok {
		return l[i]
	}
	return nil
}

func compareShard(sh *hubShard, index int) int { return cmp.Compare(sh.index, index) }

// shardFor returns the shard of fd, making it if needed.
func (h *Hub) shardFor(fd int) *hubShard {
	if sh := h.shard(fd); sh != nil {
		return sh
	}
	h.shardMu.Lock()
	defer h.shardMu.Unlock()
	l := h.shardList()
	i, ok := slices.BinarySearchFunc(l, fd/hubShardFDs, compareShard)
	if ok {
		return l[i]
	}
	sh := &hubShard{h: h, index: fd / hubShardFDs}
	l = slices.Insert(slices.Clip(l), i, sh) // a copy: readers keep the old list
	h.shards.Store(&l)
	return sh
}

func (h *Hub) add(c *Conn) {
	sh := h.shardFor(int(c.sock.fd))
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
	sh := h.shard(fd)
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

// BroadcastPrepared sends p to every member. It never blocks on a socket
// and never writes: the shards' flush tasks do.
func (h *Hub) BroadcastPrepared(p *frame.Prepared) {
	cost := frameCost(p.Len())
	limit, pause := h.s.cfg.HubBacklogBytes, h.pauseBytes()
	h.s.stats.broadcasts.Add(1)
	for _, sh := range h.shardList() {
		sh.mu.Lock()
		if len(sh.members) == 0 {
			sh.mu.Unlock()
			continue
		}
		if sh.backlog+cost > limit {
			sh.mu.Unlock()
			h.drops.Add(1)
			h.s.stats.broadcastDrops.Add(1)
			continue
		}
		if len(sh.pending) == 0 {
			sh.pendSince = time.Now()
		}
		sh.pending = append(sh.pending, p)
		sh.backlog += cost
		if !sh.behind && sh.backlog > pause {
			sh.behind = true
			h.behind.Add(1)
		}
		start := !sh.scheduled
		sh.scheduled = true
		sh.mu.Unlock()
		if start {
			h.s.dispatchWrite(sh)
		}
	}
}

// pauseBytes is the shard backlog past which the hub's members stop being
// read: hubPauseBytes, kept below the drop bound.
func (h *Hub) pauseBytes() int { return min(hubPauseBytes, h.s.cfg.HubBacklogBytes/2) }

// flush delivers the shard's pending frames to each member, oldest first,
// until nothing is pending. Only the task that set scheduled runs it.
func (sh *hubShard) flush(w *writer) {
	h := sh.h
	for {
		sh.mu.Lock()
		batch := sh.pending
		if len(batch) == 0 {
			sh.scheduled = false
			if sh.idle != nil {
				close(sh.idle)
				sh.idle = nil
			}
			sh.mu.Unlock()
			return
		}
		sh.pending, sh.spare = sh.spare[:0], nil
		since := sh.pendSince
		members := sh.members
		sh.mu.Unlock()

		for i := 0; i < len(batch); i += iovMax {
			chunk := batch[i:min(i+iovMax, len(batch))]
			for _, c := range members {
				_ = c.writePrepared(w, chunk)
			}
		}
		h.s.metrics.fanout.Observe(time.Since(since).Seconds())
		cost := 0
		for _, p := range batch {
			cost += frameCost(p.Len())
		}
		clear(batch)
		sh.mu.Lock()
		sh.spare = batch[:0]
		sh.backlog -= cost
		caughtUp := sh.behind && sh.backlog <= h.pauseBytes()/2
		if caughtUp {
			sh.behind = false
		}
		sh.mu.Unlock()
		if caughtUp && h.behind.Add(-1) == 0 {
			h.resume()
		}
	}
}

// park stops reading c, a member whose read task just ended, while h is
// behind; it reports false if h caught up meanwhile (read c on).
func (h *Hub) park(c *Conn) bool {
	h.pauseMu.Lock()
	defer h.pauseMu.Unlock()
	if h.behind.Load() == 0 { // checked under pauseMu: resume takes it after the count reaches 0
		return false
	}
	h.paused = append(h.paused, c)
	h.s.stats.publishersPaused.Add(1)
	return true
}

// resume reads again the members parked while h was behind.
func (h *Hub) resume() {
	h.pauseMu.Lock()
	paused := h.paused
	h.paused = nil
	h.pauseMu.Unlock()
	for _, c := range paused {
		c.resumeRead()
	}
}

// drain flushes every shard on the calling goroutine, waiting for running
// flush tasks, so that what was broadcast is queued on every connection.
func (h *Hub) drain() {
	w := writers.Get().(*writer)
	defer writers.Put(w)
	defer h.s.flushStats(w)
	for _, sh := range h.shardList() {
		for {
			sh.mu.Lock()
			if sh.scheduled { // a flush task owns it; it ends when pending is empty
				if sh.idle == nil {
					sh.idle = make(chan struct{})
				}
				idle := sh.idle
				sh.mu.Unlock()
				<-idle
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
