package server

import "sync"

// flushQueue is the write pool: a fixed set of workers taking flushers
// (hub shards with pending broadcasts, connections whose socket became
// writable) in FIFO order. Scheduling never blocks and never runs a flush
// on the caller: a reader that publishes only appends to the hubs. While
// the workers are busy, broadcasts accumulate on their shards, so the next
// flush of a shard gives each member everything pending in one gather
// write (send or sendmsg): the
// busier the server, the more frames share a syscall.
//
// The queue needs no bound of its own: a shard is queued at most once
// (hubShard.scheduled) and a connection at most once per one-shot EPOLLOUT,
// so it never holds more than one entry per shard and per connection.
type flushQueue struct {
	mu     sync.Mutex
	wake   sync.Cond
	items  []flusher
	head   int
	idle   int // workers waiting in wake
	n      int // workers
	closed bool
}

// flusher is a unit of write work: a hub shard with pending broadcasts or a
// connection whose socket became writable.
type flusher interface{ flush(w *writer) }

// startWriters starts n write workers, tracked by s.wg.
func (s *Server) startWriters(n int) {
	s.writes.wake.L = &s.writes.mu
	s.writes.n = n
	s.wg.Add(n)
	for range n {
		go s.writeWorker()
	}
}

func (s *Server) writeWorker() {
	defer s.wg.Done()
	w := newWriter()
	q := &s.writes
	for {
		q.mu.Lock()
		for q.head == len(q.items) && !q.closed {
			q.idle++
			q.wake.Wait()
			q.idle--
		}
		if q.head == len(q.items) { // closed and empty
			q.mu.Unlock()
			return
		}
		f := q.items[q.head]
		q.items[q.head] = nil
		q.head++
		if q.head == len(q.items) {
			q.items, q.head = q.items[:0], 0
		}
		q.mu.Unlock()
		f.flush(w)
		s.flushStats(w)
	}
}

// dispatchWrite queues f for a write worker. It never blocks and never
// writes; after shutdown it drops f (teardown destroys every connection).
func (s *Server) dispatchWrite(f flusher) {
	q := &s.writes
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.idle == 0 {
		s.stats.poolSaturated.Add(1)
	}
	q.items = append(q.items, f)
	if q.idle > 0 {
		q.wake.Signal()
	}
	q.mu.Unlock()
}

// stopWriters lets the workers finish what is queued, then end.
func (s *Server) stopWriters() {
	q := &s.writes
	q.mu.Lock()
	q.closed = true
	q.wake.Broadcast()
	q.mu.Unlock()
}

// busy reports whether a write worker is flushing or work is queued.
func (q *flushQueue) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head < len(q.items) || q.idle < q.n
}
