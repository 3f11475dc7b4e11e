//go:build linux

package bench

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/poller"
	"golang.org/x/sys/unix"
)

// group is the connections one process holds. They have no goroutine of
// their own: the poller's goroutines (one per CPU) read each socket as it
// reports it, edge-triggered, so a delivery costs the generator one read
// and a share of an epoll_wait: no epoll_ctl to re-arm and no hand-off to
// another goroutine (each was a syscall or a futex wake per message, and
// at 1M connections the generator cost more than the servers it measured).
type group struct {
	cfg       Config
	first, n  int // global index of the first connection, and how many
	pl        *poller.Poller
	st        *stats
	storm     *stats // broadcast with Churners: the churners' handshakes
	measuring atomic.Bool
	mu        sync.Mutex
	conns     []*client
	held      []int // slow scenario: fds of silent and stalled clients
	dialErrs  atomic.Int64
	stopSend  chan struct{}
	senders   sync.WaitGroup
	loopUntil atomic.Int64  // closed-loop echo: replies are answered until this time (Unix ns); 0: no loop
	echoSeq   atomic.Uint64 // echo: the last sequence number sent
}

// client is one connection of a group.
type client struct {
	g    *group
	fd   int
	tok  poller.Token
	id   int
	ch   int       // channel mode: the channel subscribed to
	tc   *tls.Conn // wss: crypto/tls over the fd (a detached sock); nil for ws
	p    frame.Parser
	last []uint64   // highest sequence seen, per publisher
	wmu  sync.Mutex // writes (pongs, echo sends), tok and dead
	dead bool
}

// Readable reads c on the poller's goroutine: every socket of one epoll
// instance is read by its one goroutine, one socket after another.
func (c *client) Readable(poller.Event) {
	// Taking wmu orders what open and kill wrote before (the kernel's
	// event hand-off is invisible to the race detector).
	c.wmu.Lock()
	alive := !c.dead
	c.wmu.Unlock()
	if !alive {
		return
	}
	buf := readBufs.Get().(*[]byte)
	defer readBufs.Put(buf)
	if c.tc != nil {
		alive = c.readTLS(*buf)
	} else {
		alive = c.readPlain(*buf)
	}
	if !alive {
		c.kill() // no-op if consume already did
	}
}

// readBufs are the poller goroutines' read buffers.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (c *client) Writable(poller.Event) {}

func newGroup(cfg Config, first, n int) (*group, error) {
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	pl, err := poller.New(runtime.GOMAXPROCS(0), int(rl.Cur), nil)
	if err != nil {
		return nil, err
	}
	return &group{cfg: cfg, first: first, n: n, pl: pl, st: newStats(), storm: newStats(), stopSend: make(chan struct{})}, nil
}

// connect opens the group's connections at the configured rate, with
// bounded concurrency.
func (g *group) connect(ctx context.Context) {
	if g.cfg.Scenario == ScenarioChurn {
		return // churners open and close their own connections
	}
	d := newDialer(g.cfg)
	silent := 0
	if g.cfg.Scenario == ScenarioSlow {
		silent = int(float64(g.n) * g.cfg.SlowFrac)
	}
	rate, inFlight := g.cfg.dialShare(g.n)
	interval := time.Second / time.Duration(rate)
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	next := time.Now()
	for i := 0; i < g.n && ctx.Err() == nil; i++ {
		next = next.Add(interval)
		if wait := time.Until(next); wait > time.Millisecond {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := g.open(ctx, d, g.first+i, i < silent); err != nil {
				g.dialErrs.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if g.cfg.Scenario == ScenarioSlow {
		g.stall(ctx, d)
	}
	// The ramp's garbage (TLS handshakes, dial goroutines' stacks) goes
	// back to the OS, so that RSS shows what the connections keep.
	debug.FreeOSMemory()
}

// open dials connection idx and registers it with the poller, or holds
// it unread when silent (it never reads: the server must evict it, not
// wait for it).
func (g *group) open(ctx context.Context, d dialer, idx int, silent bool) error {
	nc, rest, err := d.dial(ctx, g.cfg.subscriberURL(idx), idx)
	if err != nil {
		return err
	}
	tc, _ := nc.(*tls.Conn)
	fd, err := detach(nc)
	if err != nil {
		return err
	}
	if silent {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		g.hold(fd)
		return nil
	}
	c := &client{g: g, fd: fd, id: idx, tc: tc, p: frame.Parser{Role: frame.ClientSide, MaxMessageBytes: 16 << 20, Deflate: g.cfg.Deflate}}
	if g.cfg.Channels > 0 {
		c.ch = idx % g.cfg.Channels
	}
	if len(rest) > 0 && !c.consume(rest) {
		return nil
	}
	// crypto/tls may hold whole records it read with the handshake, which
	// no readiness event would announce: read them before registering.
	if tc != nil && !c.readTLS(make([]byte, 4<<10)) {
		c.kill()
		return nil
	}
	g.mu.Lock()
	g.conns = append(g.conns, c)
	g.mu.Unlock()
	c.wmu.Lock() // an event may fire before Register returns
	c.tok, err = g.pl.Register(fd, c)
	c.wmu.Unlock()
	return err
}

// stall opens clients stuck mid-handshake and mid-frame.
func (g *group) stall(ctx context.Context, d dialer) {
	for i := range g.cfg.Stalled * g.n / max(1, g.cfg.Conns) {
		u := g.cfg.URLs[i%len(g.cfg.URLs)]
		if i%2 == 0 {
			nc, _, err := d.dial(ctx, u, g.first+i)
			if err != nil {
				continue
			}
			_, _ = nc.Write([]byte{0x82, 0xFE}) // half a frame header, then silence
			if fd, err := detach(nc); err == nil {
				g.hold(fd)
			}
			continue
		}
		nc, err := net.DialTimeout("tcp", hostOf(u), 5*time.Second)
		if err != nil {
			continue
		}
		half := []byte("GET /ws HTTP/1.1\r\nHost: x\r\n") // half a request
		if strings.HasPrefix(u, "wss:") {
			half = []byte{0x16, 0x03, 0x01, 0x02, 0x00} // a ClientHello's record header, no body
		}
		_, _ = nc.Write(half)
		if fd, err := poller.Detach(nc); err == nil {
			g.hold(fd)
		}
	}
}

func (g *group) hold(fd int) {
	g.mu.Lock()
	g.held = append(g.held, fd)
	g.mu.Unlock()
}

// subsPerChannel counts the group's live subscribers per channel (nil
// outside channel mode).
func (g *group) subsPerChannel() []int {
	if g.cfg.Channels == 0 {
		return nil
	}
	subs := make([]int, g.cfg.Channels)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		subs[c.ch]++
	}
	return subs
}

func (g *group) connected() (int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns), int(g.dialErrs.Load())
}

// read drains readable sockets handed over by the poller.
// readPlain reads c's socket until a short read or EAGAIN (edge-triggered:
// bytes left unread would get no new event); it returns false once c is
// dead.
func (c *client) readPlain(buf []byte) bool {
	for {
		n, err := unix.Read(c.fd, buf)
		if n > 0 {
			if c.g.measuring.Load() {
				c.g.st.rxBytes.Add(int64(n))
			}
			if !c.consume(buf[:n]) {
				return false // killed: the fd is closed
			}
			if n < len(buf) {
				return true
			}
			continue
		}
		switch err {
		case unix.EAGAIN:
			return true
		case unix.EINTR:
			continue
		}
		return false // EOF or reset
	}
}

// readTLS reads c's records until the socket would block. It has no
// budget: stopping earlier could leave whole records inside crypto/tls,
// which no readiness event would announce. rxBytes counts the frames'
// bytes, before TLS. It returns false once c is dead.
func (c *client) readTLS(buf []byte) bool {
	c.tc.NetConn().(*sock).drained = false
	for {
		n, err := c.tc.Read(buf)
		if n > 0 {
			if c.g.measuring.Load() {
				c.g.st.rxBytes.Add(int64(n))
			}
			if !c.consume(buf[:n]) {
				return false
			}
		}
		if err != nil {
			return err == errWouldBlock
		}
	}
}

func (c *client) kill() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return
	}
	c.dead = true
	c.g.st.closed.Add(1)
	_ = c.g.pl.Deregister(c.tok)
	_ = unix.Close(c.fd)
}

// consume parses server frames and records what the scenario measures. It
// returns false once c is dead.
func (c *client) consume(data []byte) bool {
	g := c.g
	for len(data) > 0 {
		m, n, err := c.p.Parse(data)
		data = data[n:]
		if err != nil {
			c.kill()
			return false
		}
		switch m.Op {
		case frame.OpText, frame.OpBinary:
			if !g.measuring.Load() {
				continue
			}
			if g.cfg.Channels > 0 {
				c.channelMessage(m.Payload)
				continue
			}
			if len(m.Payload) < headerBytes {
				continue
			}
			sent := time.Unix(0, int64(binary.LittleEndian.Uint64(m.Payload)))
			pub, seq := splitSeq(binary.LittleEndian.Uint64(m.Payload[8:]))
			if g.cfg.Scenario != ScenarioEcho {
				c.order(pub, seq)
			}
			g.st.received.Add(1)
			g.st.record(c.id, time.Since(sent))
			if until := g.loopUntil.Load(); until != 0 && time.Now().UnixNano() < until {
				g.sendEcho(c)
			}
		case frame.OpPing:
			c.write(frame.AppendClientFrame(nil, frame.OpPong, m.Payload, maskKey()))
		case frame.OpClose:
			c.kill()
			return false
		}
	}
	return true
}

// order counts gaps and reordering in stream's sequence numbers (a
// publisher's in the room, the channel's in channel mode).
func (c *client) order(stream int, seq uint64) {
	for len(c.last) <= stream {
		c.last = append(c.last, 0)
	}
	last := c.last[stream]
	switch {
	case last != 0 && seq <= last:
		c.g.st.reordered.Add(1)
	case last != 0 && seq > last+1:
		c.g.st.lost.Add(int64(seq - last - 1))
	}
	c.last[stream] = max(last, seq)
}

// channelMessage records one frame received in channel mode: a delivery of
// c's channel is checked for order and timed; other message types
// (subscribed, ...) are not deliveries.
func (c *client) channelMessage(p []byte) {
	g := c.g
	e, kind := parseEnvelope(p)
	switch kind {
	case envOther:
		return
	case envMalformed:
		g.st.malformed.Add(1)
		return
	}
	if !channelIs(e.channel, g.cfg.ChannelPrefix, c.ch) {
		g.st.misrouted.Add(1)
		return
	}
	c.order(0, e.seq) // one channel per subscriber, one publisher per channel
	g.st.received.Add(1)
	g.st.record(c.id, time.Since(time.UnixMicro(e.sentUS)))
}

// write sends b without blocking; a full socket drops it (counted by the
// caller's scenario as a missing reply).
func (c *client) write(b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return false
	}
	if c.tc != nil { // a record is never cut: the sock waits for room
		_, err := c.tc.Write(b)
		return err == nil
	}
	n, err := unix.Write(c.fd, b)
	return err == nil && n == len(b)
}

// startEcho sends rate messages per second, round-robin over the group's
// connections, until the measurement time is over (the drain that follows
// lets the last replies arrive) or stopSenders. In closed loop each
// connection sends one message and consume sends the next on each reply.
func (g *group) startEcho(rate float64) {
	end := time.Now().Add(g.cfg.Duration)
	g.mu.Lock()
	conns := append([]*client(nil), g.conns...)
	g.mu.Unlock()
	if g.cfg.ClosedLoop {
		g.loopUntil.Store(end.UnixNano())
		for _, c := range conns {
			g.sendEcho(c)
		}
		return
	}
	if len(conns) == 0 || rate <= 0 {
		return
	}
	g.senders.Add(1)
	go func() {
		defer g.senders.Done()
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for i := 0; time.Now().Before(end); i++ {
			select {
			case <-g.stopSend:
				return
			default:
			}
			g.sendEcho(conns[i%len(conns)])
			next = next.Add(interval)
			if wait := time.Until(next); wait > 0 {
				time.Sleep(wait)
			}
		}
	}()
}

// sendEcho sends c the next echo message.
func (g *group) sendEcho(c *client) {
	if c.write(clientMessage(g.cfg.Size, g.echoSeq.Add(1))) {
		g.st.sent.Add(1)
	}
}

// startChurn runs churners concurrent connect/close loops (at most 256)
// recording each handshake's time in st, for the measurement time or
// until stopSenders.
func (g *group) startChurn(ctx context.Context, churners int, st *stats) {
	d := newDialer(g.cfg)
	end := time.Now().Add(g.cfg.Duration)
	for w := range min(churners, 256) {
		g.senders.Add(1)
		go func() {
			defer g.senders.Done()
			for i := 0; time.Now().Before(end); i++ {
				select {
				case <-g.stopSend:
					return
				default:
				}
				idx := g.first + w + i*256
				start := time.Now()
				nc, _, err := d.dial(ctx, g.cfg.URLs[idx%len(g.cfg.URLs)], idx)
				if err != nil {
					st.failed.Add(1)
					continue
				}
				st.sent.Add(1)
				st.record(w, time.Since(start))
				if tc, ok := nc.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // no TIME_WAIT pile-up on the client side
				}
				nc.Close()
			}
		}()
	}
}

func (g *group) stopSenders() {
	g.loopUntil.Store(0)
	close(g.stopSend)
	g.senders.Wait()
}

func (g *group) close() {
	g.pl.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.wmu.Lock()
		if !c.dead {
			c.dead = true
			_ = unix.Close(c.fd)
		}
		c.wmu.Unlock()
	}
	for _, fd := range g.held {
		_ = unix.Close(fd)
	}
}

func maskKey() [4]byte {
	v := rand.Uint32()
	return [4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

// clientMessage is a masked binary frame carrying now and seq.
func clientMessage(size int, seq uint64) []byte {
	p := make([]byte, size)
	stamp(p, seq)
	return frame.AppendClientFrame(nil, frame.OpBinary, p, maskKey())
}
