package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/poller"
	"github.com/fanout-ws/fanout/server/internal/pace"
	"github.com/fanout-ws/fanout/server/internal/tlsrec"
	"github.com/panjf2000/ants/v2"
	"golang.org/x/sys/unix"
)

// fdReserve is kept free below the open-files limit for listeners (the
// admin listener too), epoll instances, log files, broker connections, the
// dups taken during accept and refused sockets (at most half of it).
const fdReserve = 256

// Server is a WebSocket server on an epoll netpoller and two bounded worker
// pools. Create it with New; it is safe for concurrent use.
type Server struct {
	clock     atomic.Int64 // coarse time in ns, advanced by the sweeper
	live      atomic.Int64 // open connections, handshakes included
	bridged   atomic.Int64 // of which Handler connections behind HTTPS, bridgeFDs more sockets each
	refusing  atomic.Int64 // refused sockets lingering after their answer (admission.go)
	nextID    atomic.Uint64
	shutting  atomic.Bool
	draining  atomic.Bool // Drain began: not ready (drain.go)
	lastWarn  atomic.Int64
	stats     counters
	cfg       Config
	log       *slog.Logger
	ceiling   int // effective MaxConns
	fdLimit   int
	startOnce sync.Once
	startErr  error
	poller    *poller.Poller
	reads     *ants.PoolWithFuncGeneric[*Conn]
	writes    flushQueue
	conns     []atomic.Pointer[Conn] // by fd
	ping      []byte                 // the shared ping frame
	metrics   *metrics
	deflater  frame.Deflater // compresses each broadcast once for every receiver that negotiated it

	ipLimits   ipLimits
	handshakes *pace.Limiter // Config.MaxHandshakeRate, or nil
	httpLn     *httpListener // plain HTTP requests, for Config.HTTPHandler
	httpSrv    *http.Server

	// readBufPool lends a read buffer to a worker for one task; idle
	// connections hold none.
	readBufPool sync.Pool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	hubs      map[*Hub]struct{}
	addr      net.Addr
	ready     chan struct{}
	idle      chan struct{} // closed when live reaches 0 during shutdown
	tlsConfig *tls.Config   // Config.TLS for handshakes that tlsrec takes over (tls13.go)
	readBytes int           // the read buffers' size: ReadBufferBytes, at least tlsReadBytes under TLS
	stop      chan struct{}
	wg        sync.WaitGroup
	closed    bool
}

// New copies cfg, applies defaults and validates it. It does no I/O. Off
// Linux it returns ErrUnsupported.
func New(cfg Config) (*Server, error) {
	if supported != nil {
		return nil, supported
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "server"),
		listeners: make(map[net.Listener]struct{}),
		hubs:      make(map[*Hub]struct{}),
		ready:     make(chan struct{}),
		idle:      make(chan struct{}),
		stop:      make(chan struct{}),
		ping:      frame.AppendFrame(nil, frame.OpPing, nil),
	}
	s.deflater.Level, s.deflater.MinBytes = cfg.CompressionLevel, cfg.CompressionMinBytes
	s.readBytes = cfg.ReadBufferBytes
	if cfg.TLS != nil {
		s.tlsConfig = tlsrec.Config(cfg.TLS)
		s.readBytes = max(s.readBytes, tlsReadBytes)
	}
	if cfg.MaxHandshakeRate > 0 {
		s.handshakes = pace.New(cfg.MaxHandshakeRate)
	}
	s.clock.Store(timeNow())
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil, fmt.Errorf("server: getrlimit: %w", err)
	}
	s.fdLimit = int(min(rl.Cur, 1<<24))
	s.ceiling = min(s.cfg.MaxConns, s.fdLimit-fdReserve)
	if s.ceiling < 1 {
		return nil, fmt.Errorf("server: open-files limit %d leaves no room for connections", s.fdLimit)
	}
	s.conns = make([]atomic.Pointer[Conn], s.fdLimit)
	s.metrics = newMetrics(s)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return s, nil
}

// start brings up the pollers, pools and sweeper once.
func (s *Server) start() error {
	s.startOnce.Do(func() { s.startErr = s.startEngine() })
	return s.startErr
}

func (s *Server) startEngine() error {
	if s.ceiling < s.cfg.MaxConns {
		s.log.Info("connection ceiling set by the open-files limit", "max_conns", s.cfg.MaxConns, "open_files_limit", s.fdLimit, "ceiling", s.ceiling)
	}
	p, err := poller.New(s.cfg.Pollers, s.fdLimit, func(err error) { s.log.Error("epoll wait", "err", err) })
	if err != nil {
		return err
	}
	s.poller = p
	opts := []ants.Option{ants.WithDisablePurge(true), ants.WithPanicHandler(func(v any) {
		s.log.Error("worker panic", "panic", v)
	})}
	// Reads are handed off by the epoll goroutines; a full pool blocks them,
	// which leaves events in the kernel (backpressure) instead of dropping them.
	s.reads, err = ants.NewPoolWithFuncGeneric(s.cfg.Workers, s.serveRead, opts...)
	if err != nil {
		p.Close()
		return err
	}
	s.startWriters(s.cfg.WriteWorkers)
	s.wg.Add(1)
	go s.sweep()
	s.startHTTP()
	return nil
}

// now is the coarse clock (ns) used for timeouts.
func (s *Server) now() int64 { return s.clock.Load() }

// dispatchRead runs on an epoll goroutine: hand off only.
func (s *Server) dispatchRead(c *Conn) {
	if !c.claimRead() {
		return
	}
	if s.reads.Free() == 0 {
		s.stats.poolSaturated.Add(1)
	}
	if err := s.reads.Invoke(c); err != nil {
		c.destroy(ReasonServerShutdown) // the pool is released: shutting down
	}
	s.yieldToWorkers()
}

// requeueRead gives c a new read task; c's reads stay owned (readBusy)
// until it starts. It runs on a read worker, which must not wait for a
// worker of its own pool (every worker might): a goroutine waits instead,
// in line with the epoll goroutines, and ends once the task is handed
// over. Only a TLS connection that used its whole read budget comes here.
func (s *Server) requeueRead(c *Conn) {
	s.wg.Add(1) // the write workers hold s.wg until after the read pool is released
	go func() {
		defer s.wg.Done()
		if err := s.reads.Invoke(c); err != nil {
			c.destroy(ReasonServerShutdown) // the pool is released: shutting down
		}
	}()
}

// yieldToWorkers runs on an epoll goroutine after it readied a worker. That
// goroutine's next step is a blocking epoll_wait, which keeps its P: a
// goroutine left runnable behind it waits until sysmon takes the P away,
// 20 µs to 10 ms later, while the core idles. So it yields, which runs the
// task it readied now, the way an event loop would, and yields again, at
// most yieldsWhileWriting times, while the write pool is still busy: a
// write worker that the scheduler preempted waits in the global run queue,
// where the first yield does not reach it.
func (s *Server) yieldToWorkers() {
	runtime.Gosched()
	for i := 0; i < yieldsWhileWriting && s.writes.busy(); i++ {
		runtime.Gosched()
	}
}

// yieldsWhileWriting bounds how long an epoll goroutine lets writes go
// first. Measured on one pinned core (issue 9), p99 at 19,000 x 20/s for
// 0, 2, 4, 8, 16: 460, 276, 289, 342, 338 ms (0 left the core 35% idle);
// at 5,000 x 76/s for 2, 4, 8: 109, 138, 114 ms.
const yieldsWhileWriting = 2

// ListenAndServe listens on Config.Addr (see Listen) and serves it.
func (s *Server) ListenAndServe() error {
	ln, err := Listen(s.cfg.Addr, false)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	return s.Serve(ln)
}

// Listen opens a TCP listener for Serve: with SO_REUSEPORT when reusePort,
// so that several processes share one port (the kernel balances accepts),
// and without TCP keepalive on the sockets it accepts. Go turns keepalive
// on by default (a probe after 15 s idle, three setsockopt calls per
// accept); WebSocket pings and the idle timeout already find dead peers,
// and at 1M connections the kernel's probes were ~67k packets a second
// with their ACKs. A listener made otherwise keeps its own setting.
func Listen(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	if reusePort {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Serve accepts connections on ln and upgrades them on the poller until
// Shutdown or Close, then returns ErrServerClosed. ln must yield sockets
// (syscall.Conn), as TCP and Unix listeners do.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.start(); err != nil {
		ln.Close()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if s.addr == nil {
		s.addr = ln.Addr()
		close(s.ready)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.log.Info("listening", "addr", ln.Addr().String(), "workers", s.cfg.Workers, "write_workers", s.cfg.WriteWorkers, "pollers", s.cfg.Pollers,
		"max_conns", s.ceiling, "open_files_limit", s.fdLimit)

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			// EMFILE and friends: the kernel keeps the connection in the
			// backlog; back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.warnSampled("accept failed; backing off", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-s.stop:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.accept(nc)
	}
}

// register tracks c and arms its first read.
func (s *Server) register(c *Conn) error {
	if err := s.track(c); err != nil {
		return err
	}
	return s.arm(c)
}

// track puts c in the fd table and in the hubs it joined before it had a
// socket, then runs what waited for that (DeferUntilAttached).
func (s *Server) track(c *Conn) error {
	if int(c.sock.fd) >= len(s.conns) {
		return fmt.Errorf("server: fd %d beyond the open-files limit %d", c.sock.fd, len(s.conns))
	}
	s.conns[c.sock.fd].Store(c)
	c.mu.Lock()
	hubs := c.app.joined()
	attached := c.hs.takeAttached()
	c.mu.Unlock()
	for _, h := range hubs {
		h.add(c)
	}
	runAttached(attached, true)
	return nil
}

// arm registers c's fd with the poller, read interest armed. c.mu is held
// across the epoll_ctl so that an event firing at once finds the token set:
// a worker that read a zero token could not deregister the fd. A c closed
// before it was armed (a hijacked connection's client can be served, and
// gone, while the hijacking goroutine still writes) is not registered: its
// fd is closed, and the number may already be another connection's.
func (s *Server) arm(c *Conn) error {
	c.mu.Lock()
	if c.life.current() == stateClosed {
		c.mu.Unlock()
		return nil
	}
	t, err := s.poller.Register(int(c.sock.fd), (*pollHandler)(c))
	c.sock.registered(t)
	parked := c.out.unpark() && err == nil
	c.mu.Unlock()
	if parked {
		c.armWrite() // a write hit a full socket before registration
	}
	return err
}

// connClosed accounts for a destroyed connection, runs OnClose and then
// gives back sl, the connection's slot.
func (s *Server) connClosed(c *Conn, code frame.CloseCode, reason CloseReason, connected bool, sl *slot) {
	s.stats.closed[min(int(reason), len(s.stats.closed)-1)].Add(1)
	s.log.Debug("closed", "conn", c.id, "remote", sl.addr().String(), "code", int(code), "reason", reason.String())
	if connected && s.cfg.OnClose != nil {
		s.cfg.OnClose(c, code, reason)
	}
	s.releaseSlot(sl)
}

func (s *Server) signalIdle() {
	s.mu.Lock()
	select {
	case <-s.idle:
	default:
		close(s.idle)
	}
	s.mu.Unlock()
}

func (s *Server) connError(c *Conn, err error) {
	s.stats.errors.Add(1)
	s.log.Debug("connection error", "conn", c.id, "remote", c.slot.addr().String(), "err", err)
	if s.cfg.OnError != nil {
		s.cfg.OnError(c, err)
	}
}

// warnSampled logs at Warn at most once a second; the rest are counted in
// metrics only.
func (s *Server) warnSampled(msg string, args ...any) {
	now := timeNow()
	last := s.lastWarn.Load()
	if now-last < int64(time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}

// Addr is the address of the first listener, once Serve has started.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Ready is closed once Serve listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Accepting reports whether Serve is listening and neither Drain nor
// Shutdown has begun: what a readiness probe should report (with the
// readiness of whatever the application built on the server, such as a
// pub/sub broker).
func (s *Server) Accepting() bool {
	select {
	case <-s.ready:
		return !s.shutting.Load() && !s.draining.Load()
	default:
		return false
	}
}

// ShuttingDown reports whether Shutdown or Close has begun, for handlers
// mounted beside the server that should refuse new work from then on.
func (s *Server) ShuttingDown() bool { return s.shutting.Load() }

// Config is the server's configuration, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Live is the number of open connections, handshakes included.
func (s *Server) Live() int { return int(s.live.Load()) }

// Ceiling is the effective connection limit: Config.MaxConns capped by the
// open-files limit (less a small reserve).
func (s *Server) Ceiling() int { return s.ceiling }

// Shutdown stops accepting, flushes every hub, sends close 1001 to every
// connection behind its queued messages and waits for the close handshakes
// until ctx is done; then it closes what is left and releases the pollers
// and pools. It returns ctx.Err() if connections had to be cut. Later calls
// return nil.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.shutting.CompareAndSwap(false, true) {
		return nil
	}
	s.log.Info("shutdown begun", "live", s.live.Load())
	s.closeListeners()
	httpDone := make(chan struct{})
	go func() { // beside the WebSocket closes: a stuck request must not hold back their 1001
		defer close(httpDone)
		if s.httpSrv != nil {
			_ = s.httpSrv.Shutdown(ctx) // closes idle keep-alives, lets requests in flight finish
		}
	}()
	var err error
	if s.poller != nil {
		s.flushHubs()
		s.eachConn(func(c *Conn) {
			if c.isOpen() {
				_ = c.closeWith(frame.CloseGoingAway, "server shutdown", ReasonServerShutdown, false)
			} else {
				c.mu.Lock()
				hs := c.life.current() == stateHandshake
				c.mu.Unlock()
				if hs {
					c.destroy(ReasonServerShutdown)
				}
			}
		})
		if s.live.Load() == 0 {
			s.signalIdle()
		}
		select {
		case <-s.idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	<-httpDone
	s.teardown()
	s.log.Info("shutdown finished", "err", err)
	return err
}

// Close closes every connection at once, without close handshakes, and
// releases everything. Later calls return nil.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.closeListeners()
	s.teardown()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	clear(s.listeners)
	s.mu.Unlock()
}

// teardown destroys the remaining connections and stops the engine once.
func (s *Server) teardown() {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		s.wg.Wait()
		return
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	if s.poller == nil {
		s.startOnce.Do(func() { s.startErr = ErrServerClosed })
		return
	}
	s.eachConn(func(c *Conn) { c.destroy(ReasonServerShutdown) })
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	s.poller.Close()
	_ = s.reads.ReleaseTimeout(5 * time.Second)
	s.stopWriters()
	s.wg.Wait()
}

// flushHubs queues every pending broadcast on its members' connections.
func (s *Server) flushHubs() {
	s.mu.Lock()
	hubs := slices.Collect(maps.Keys(s.hubs))
	s.mu.Unlock()
	for _, h := range hubs {
		h.drain()
	}
}

func (s *Server) eachConn(f func(*Conn)) {
	for i := range s.conns {
		if c := s.conns[i].Load(); c != nil {
			f(c)
		}
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
