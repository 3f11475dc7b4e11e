package server

import (
	"errors"
	"math/bits"
	"sync"

	"github.com/fanout-ws/fanout/frame"

	"golang.org/x/sys/unix"
)

// writer is per-task scratch for gather writes, so the write path allocates
// nothing per delivery.
type writer struct {
	iov   []unix.Iovec
	bufs  [][]byte // writeQueue's view of c.q
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

// wrote records one writev call that offered frames frames.
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

// frameBytes returns the bytes of p that c receives: the one place that
// picks a prepared message's variant for a connection. A connection that
// negotiated permessage-deflate gets the compressed twin (built once for
// all receivers) when p fits the window it allowed (deflate.go).
func (c *Conn) frameBytes(p *frame.Prepared) []byte {
	if c.zbits == 0 || (c.zbits < maxWindowBits && p.PayloadLen() > 1<<c.zbits) {
		return p.Bytes()
	}
	return p.Compressed(&c.srv.deflater)
}

// writePrepared sends c its variant of each of ps (at most iovMax) with one
// writev, behind whatever c's queue holds.
func (c *Conn) writePrepared(w *writer, ps []*frame.Prepared) error {
	for _, p := range ps {
		w.batch = append(w.batch, c.frameBytes(p))
	}
	err := c.writeFrames(w, w.batch, false)
	clear(w.batch)
	w.batch = w.batch[:0]
	return err
}

// write sends one frame to c; a close frame is let through while closing.
func (c *Conn) write(b []byte, isClose bool) error {
	w := writers.Get().(*writer)
	w.one[0] = b
	err := c.writeFrames(w, w.one[:], isClose)
	w.one[0] = nil
	c.srv.flushStats(w)
	writers.Put(w)
	return err
}

// writeFrames sends at most iovMax frames to c in order. If nobody owns c's socket it
// writes them at once with one writev; what the kernel does not take, and
// everything sent while another goroutine owns the socket, waits in c.q.
func (c *Conn) writeFrames(w *writer, frames [][]byte, isClose bool) error {
	c.mu.Lock()
	if c.state == stateClosed || (c.state == stateClosing && !isClose) {
		c.mu.Unlock()
		return ErrClosed
	}
	if isClose { // set with the frame, so no flush of earlier frames acts on it first
		c.finAfter, c.shutAfter = c.then == closeFin, c.then == closeShut
	}
	if c.writing {
		for _, b := range frames {
			c.q = append(c.q, b)
			c.qBytes += frameCost(len(b))
		}
		return c.checkQueueLocked(isClose)
	}
	c.writing = true
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
		if len(c.q) == 0 && !c.finAfter && !c.shutAfter { // the common case: give the socket back
			c.writing = false
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
	if c.state == stateClosed {
		c.mu.Unlock()
		return nil
	}
	c.pushFrontLocked(rest...)
	if err := c.checkQueueLocked(isClose); err != nil {
		return err
	}
	c.armWrite() // the kernel took less than offered: the socket is full
	return nil
}

// pushFrontLocked puts frames ahead of c's queue, charging each frameCost.
func (c *Conn) pushFrontLocked(frames ...[]byte) {
	for _, b := range frames {
		c.qBytes += frameCost(len(b))
	}
	c.q = append(frames, c.q...)
}

// checkQueueLocked unlocks c.mu and evicts c if its queue passed
// SendQueueBytes (a close frame is always let through).
func (c *Conn) checkQueueLocked(isClose bool) error {
	slow := c.qBytes > c.srv.cfg.SendQueueBytes && !isClose
	c.mu.Unlock()
	if slow {
		c.evictSlow()
		return ErrClosed
	}
	return nil
}

// writeQueue writes c.q while the kernel takes it; the caller owns c's
// socket. It returns true when the queue is empty and the caller still owns
// the socket, false when the socket is full (ownership passes to the
// EPOLLOUT event) or c is closed.
func (c *Conn) writeQueue(w *writer) bool {
	for {
		c.mu.Lock()
		if c.state == stateClosed {
			c.mu.Unlock()
			return false
		}
		if len(c.q) == 0 {
			c.mu.Unlock()
			return true
		}
		w.bufs = append(w.bufs[:0], c.q[:min(len(c.q), iovMax)]...)
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
		w.frames += uint64(c.consumeLocked(n))
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

// consumeLocked drops n written bytes from the head of c.q and returns how
// many frames that completed.
func (c *Conn) consumeLocked(n int) (frames int) {
	for n > 0 && len(c.q) > 0 {
		head := c.q[0]
		if n < len(head) {
			c.qBytes -= frameCost(len(head)) - frameCost(len(head)-n)
			c.q[0] = head[n:]
			return frames
		}
		n -= len(head)
		c.qBytes -= frameCost(len(head))
		c.q[0] = nil
		c.q = c.q[1:]
		frames++
	}
	if len(c.q) == 0 {
		c.q, c.qBytes = nil, 0 // an idle connection keeps no queue
	}
	return frames
}

// release is called by the goroutine that owns c's socket when it has
// nothing of its own left to write: it writes what others queued meanwhile,
// then gives up ownership, and closes the socket if a close frame was the
// last thing to send.
func (c *Conn) release(w *writer) {
	for c.writeQueue(w) {
		c.mu.Lock()
		if len(c.q) > 0 { // queued between writeQueue and this lock
			c.mu.Unlock()
			continue
		}
		c.writing = false
		fin := c.finAfter && c.state == stateClosing
		shut := c.shutAfter && c.state == stateClosing
		c.shutAfter = false
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
	tok := c.token
	if tok.Gen == 0 { // not registered yet: Server.arm arms it after registering
		c.parked = true
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

func (c *Conn) ioError(err error) {
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		c.srv.connError(c, err)
	}
	c.destroy(ReasonIOError)
}
