package server

import (
	"errors"
	"math/bits"
	"slices"
	"sync"

	"github.com/fanout-ws/fanout/frame"

	"golang.org/x/sys/unix"
)

// sendQueue is a Conn's write part, owned by this file, under Conn.mu.
type sendQueue struct {
	q         *queued // what waits for the socket, lent by queues; nil while nothing does
	writing   bool    // a goroutine owns the socket for writing (or waits for EPOLLOUT)
	finAfter  bool    // close the socket once the queue is flushed
	shutAfter bool    // shut the write side once the queue is flushed, and drain reads
	parked    bool    // a write waits for EPOLLOUT that could not be armed before registration
}

// queued is the frames (or their unwritten tails) waiting for a socket:
// frames[head:]. Written frames are dropped by moving head, so the slice
// keeps its capacity while it is lent and when it goes back to queues.
type queued struct {
	frames [][]byte
	head   int
	bytes  int // frameCost of what waits, charged against SendQueueBytes
}

// queues lends queued to connections while something waits for their
// socket, so an idle connection keeps none.
var queues = sync.Pool{New: func() any { return new(queued) }}

// maxPooledQueue is the largest queue slice given back to queues: a larger
// one, left by a burst, goes to the garbage collector.
const maxPooledQueue = 1024

// lend returns the queue, lending one if nothing waits.
func (o *sendQueue) lend() *queued {
	if o.q == nil {
		o.q = queues.Get().(*queued)
	}
	return o.q
}

// waiting is what waits, oldest first.
func (q *queued) waiting() [][]byte { return q.frames[q.head:] }

// push appends frames, charging each frameCost, and returns the bytes
// queued.
func (o *sendQueue) push(frames [][]byte) int {
	q := o.lend()
	if q.head > 0 && len(q.frames)+len(frames) > cap(q.frames) { // reuse the written prefix before growing
		n := copy(q.frames, q.waiting())
		clear(q.frames[n:])
		q.frames, q.head = q.frames[:n], 0
	}
	for _, b := range frames {
		q.frames = append(q.frames, b)
		q.bytes += frameCost(len(b))
	}
	return q.bytes
}

// pushFront puts frames ahead of what waits, charging each frameCost, and
// returns the bytes queued.
func (o *sendQueue) pushFront(frames ...[]byte) int {
	q := o.lend()
	for _, b := range frames {
		q.bytes += frameCost(len(b))
	}
	if q.head >= len(frames) {
		q.head -= len(frames)
		copy(q.frames[q.head:], frames)
	} else {
		q.frames = slices.Insert(q.frames, q.head, frames...)
	}
	return q.bytes
}

// consume drops n written bytes from the head and returns how many frames
// that completed. An emptied queue goes back to queues.
func (o *sendQueue) consume(n int) (frames int) {
	q := o.q
	for n > 0 && q.head < len(q.frames) {
		head := q.frames[q.head]
		if n < len(head) {
			q.bytes -= frameCost(len(head)) - frameCost(len(head)-n)
			q.frames[q.head] = head[n:]
			return frames
		}
		n -= len(head)
		q.bytes -= frameCost(len(head))
		q.frames[q.head] = nil
		q.head++
		frames++
	}
	if q.head == len(q.frames) {
		o.dropLocked()
	}
	return frames
}

// dropLocked forgets what waits and gives the queue back.
func (o *sendQueue) dropLocked() {
	q := o.q
	if q == nil {
		return
	}
	o.q = nil
	clear(q.frames)
	q.frames, q.head, q.bytes = q.frames[:0], 0, 0
	if cap(q.frames) > maxPooledQueue {
		q.frames = nil
	}
	queues.Put(q)
}

// unpark reports whether a write waited for registration to arm EPOLLOUT,
// and forgets it.
func (o *sendQueue) unpark() bool {
	p := o.parked
	o.parked = false
	return p
}

// writer is per-task scratch for gather writes, so the write path allocates
// nothing per delivery.
type writer struct {
	iov   []unix.Iovec
	bufs  [][]byte // writeQueue's view of the queue
	batch [][]byte // a hub flush's frames for one member
	one   [1][]byte

	// Counted per task and added to the server's counters once, so
	// deliveries do not contend on shared atomics.
	calls, bytes, frames, offered uint64
	perWrite                      [writeBuckets]uint64 // write syscalls by frames offered
}

func newWriter() *writer {
	return &writer{iov: make([]unix.Iovec, 0, iovMax), bufs: make([][]byte, 0, 64)}
}

// writeBuckets is the number of buckets of the frames-per-write histogram:
// bucket i counts the write syscalls that offered at most 2^i frames (and
// more than 2^(i-1)); 2^10 is iovMax.
const writeBuckets = 11

// wrote records one gather write (send or sendmsg) that offered frames
// frames.
func (w *writer) wrote(frames int) {
	w.calls++
	w.offered += uint64(frames)
	w.perWrite[min(bits.Len(uint(max(frames, 1)-1)), writeBuckets-1)]++
}

// frameOverhead is what one queued frame costs beyond its bytes: its slice
// header in a queue (with the slack of a growing slice) and, for a frame
// made for one connection (a pong, an echo), its allocation's header and
// the Prepared around it. Queue bounds charge it so that they bound memory,
// not payload: an empty frame is charged about 100 bytes, not 2.
const frameOverhead = 96

// frameCost is what a queued frame of n bytes is charged against
// SendQueueBytes and HubBacklogBytes: its bytes, the allocator's size-class
// rounding (at most an eighth) and frameOverhead.
func frameCost(n int) int { return n + n/8 + frameOverhead }

// flushStats adds w's counts to s and resets them.
func (s *Server) flushStats(w *writer) {
	if w.calls > 0 {
		s.stats.writeCalls.Add(w.calls)
		s.stats.bytesOut.Add(w.bytes)
		s.stats.framesOut.Add(w.frames)
		s.stats.framesOffered.Add(w.offered)
		for i, n := range w.perWrite {
			if n > 0 {
				s.stats.perWrite[i].Add(n)
			}
		}
		w.calls, w.bytes, w.frames, w.offered, w.perWrite = 0, 0, 0, 0, [writeBuckets]uint64{}
	}
}

var writers = sync.Pool{New: func() any { return newWriter() }}

// writePrepared sends c its variant of each of ps (at most iovMax) with one
// gather write, behind whatever c's queue holds.
func (c *Conn) writePrepared(w *writer, ps []*frame.Prepared) error {
	for _, p := range ps {
		w.batch = append(w.batch, c.frameBytes(p))
	}
	err := c.writeFrames(w, w.batch, notClose)
	clear(w.batch)
	w.batch = w.batch[:0]
	return err
}

// write sends one frame to c; a close frame (then says what follows it)
// is let through while closing.
func (c *Conn) write(b []byte, then closeAfter) error {
	w := writers.Get().(*writer)
	w.one[0] = b
	err := c.writeFrames(w, w.one[:], then)
	w.one[0] = nil
	c.srv.flushStats(w)
	writers.Put(w)
	return err
}

// writeFrames sends at most iovMax frames to c in order. If nobody owns c's socket it
// writes them at once with one gather write; what the kernel does not take, and
// everything sent while another goroutine owns the socket, waits in the
// queue. then says whether the last frame is a close frame, and what
// follows it.
func (c *Conn) writeFrames(w *writer, frames [][]byte, then closeAfter) error {
	isClose := then != notClose
	c.mu.Lock()
	if st := c.life.current(); st == stateClosed || (st == stateClosing && !isClose) {
		c.mu.Unlock()
		return ErrClosed
	}
	o := &c.out
	if isClose { // set with the frame, so no flush of earlier frames acts on it first
		o.finAfter, o.shutAfter = then == closeFin, then == closeShut
	}
	if o.writing {
		return c.checkQueueLocked(o.push(frames), isClose)
	}
	o.writing = true
	c.mu.Unlock()

	total := 0
	for _, b := range frames {
		total += len(b)
	}
	n, err := c.sock.send(w.iov, frames)
	w.wrote(len(frames))
	if err != nil && err != unix.EAGAIN {
		c.ioError(err)
		return err
	}
	w.bytes += uint64(n)
	if n == total {
		w.frames += uint64(len(frames))
		c.tlsBacklog()
		c.mu.Lock()
		if o.q == nil && !o.finAfter && !o.shutAfter { // the common case: give the socket back
			o.writing = false
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		c.release(w)
		return nil
	}
	// Keep the unwritten tails, ahead of whatever others queued meanwhile.
	var rest [][]byte
	off := n
	for i, b := range frames {
		if off >= len(b) {
			off -= len(b)
			continue
		}
		rest = append(rest, b[off:])
		rest = append(rest, frames[i+1:]...)
		w.frames += uint64(i)
		break
	}
	c.mu.Lock()
	if c.life.current() == stateClosed {
		c.mu.Unlock()
		return nil
	}
	if err := c.checkQueueLocked(o.pushFront(rest...), isClose); err != nil {
		return err
	}
	c.armWrite() // the kernel took less than offered: the socket is full
	return nil
}

// checkQueueLocked unlocks c.mu and evicts c if its queue, queued bytes,
// passed SendQueueBytes (a close frame is always let through).
func (c *Conn) checkQueueLocked(queued int, isClose bool) error {
	slow := queued > c.srv.cfg.SendQueueBytes && !isClose
	c.mu.Unlock()
	if slow {
		c.evictSlow()
		return ErrClosed
	}
	return nil
}

// writeQueue writes c's queue while the kernel takes it; the caller owns c's
// socket. It returns true when the queue is empty and the caller still owns
// the socket, false when the socket is full (ownership passes to the
// EPOLLOUT event) or c is closed.
func (c *Conn) writeQueue(w *writer) bool {
	for {
		c.mu.Lock()
		if c.life.current() == stateClosed {
			c.mu.Unlock()
			return false
		}
		q := c.out.q
		if q == nil {
			c.mu.Unlock()
			return true
		}
		wait := q.waiting()
		w.bufs = append(w.bufs[:0], wait[:min(len(wait), iovMax)]...)
		c.mu.Unlock()

		n, err := c.sock.send(w.iov, w.bufs)
		w.wrote(len(w.bufs))
		offered := 0
		for _, b := range w.bufs {
			offered += len(b)
		}
		clear(w.bufs)
		if err != nil && err != unix.EAGAIN {
			c.ioError(err)
			return false
		}
		w.bytes += uint64(n)
		c.mu.Lock()
		if c.out.q != nil { // nil once c closed
			w.frames += uint64(c.out.consume(n))
		}
		c.mu.Unlock()
		c.tlsBacklog()
		if n < offered {
			c.armWrite()
			return false
		}
	}
}

// flush runs on the write pool when c's socket became writable.
func (c *Conn) flush(w *writer) {
	if c.sock.secure() {
		c.flushTLS() // TLS writes never park the queue: only ciphertext waits
		return
	}
	c.release(w)
}

// release is called by the goroutine that owns c's socket when it has
// nothing of its own left to write: it writes what others queued meanwhile,
// then gives up ownership, and closes the socket if a close frame was the
// last thing to send.
func (c *Conn) release(w *writer) {
	for c.writeQueue(w) {
		c.mu.Lock()
		o := &c.out
		if o.q != nil { // queued between writeQueue and this lock
			c.mu.Unlock()
			continue
		}
		o.writing = false
		closing := c.life.current() == stateClosing
		fin, shut := o.finAfter && closing, o.shutAfter && closing
		o.shutAfter = false
		c.mu.Unlock()
		if fin && c.sock.pendingBytes() > 0 {
			return // flushTLS closes once the close frame's ciphertext is out
		}
		if fin {
			c.destroy(ReasonNone)
		}
		if shut {
			c.sock.shutWrite()
		}
		return
	}
}

// releaseNow is release with a writer of its own, for callers outside the
// write path.
func (c *Conn) releaseNow() {
	w := writers.Get().(*writer)
	c.release(w)
	c.srv.flushStats(w)
	writers.Put(w)
}

// armWrite asks for EPOLLOUT; the writable event resumes flush.
func (c *Conn) armWrite() {
	c.mu.Lock()
	tok := c.sock.token()
	if tok.Gen == 0 { // not registered yet: Server.arm arms it after registering
		c.out.parked = true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if !c.sock.acquire() {
		return
	}
	err := c.srv.poller.ArmWrite(tok, (*pollHandler)(c))
	c.sock.release()
	if err != nil {
		c.destroy(ReasonIOError)
	}
}

// evictSlow closes a connection whose queue passed SendQueueBytes. Its
// socket is full, so a close frame could not get through: the TCP connection
// is dropped and OnClose sees 1006 with ReasonSlowConsumer.
func (c *Conn) evictSlow() {
	c.srv.stats.slowConsumers.Add(1)
	c.srv.warnSampled("slow consumer evicted", "conn", c.id, "remote", c.slot.addr().String(), "send_queue_bytes", c.srv.cfg.SendQueueBytes)
	c.destroy(ReasonSlowConsumer)
}

// closeDue reports whether c's close frame is written and the socket is to
// close: the last of a TLS connection's ciphertext is out (flushTLS).
func (c *Conn) closeDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.finAfter && c.life.current() == stateClosing && !c.out.writing
}

func (c *Conn) ioError(err error) {
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		c.srv.connError(c, err)
	}
	c.destroy(ReasonIOError)
}
