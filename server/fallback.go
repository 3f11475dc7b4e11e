package server

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server/internal/tlsrec"
	"golang.org/x/sys/unix"
)

// Requests on Serve's listener that are not WebSocket upgrades go to
// Config.HTTPHandler: the connection leaves the poller for a net/http server
// fed by httpListener, with the bytes the poller already read replayed in
// front of the socket. It keeps its slot in MaxConns and in MaxConnsPerIP
// until it closes, and the net/http server bounds its life: each request
// must arrive whole, body included, within HandshakeTimeout, its answer be
// written within httpWriteTimeout, and a keep-alive connection may idle for
// HandshakeTimeout.

// wantsUpgrade reports whether a request head asks for a WebSocket upgrade.
func wantsUpgrade(head []byte) bool {
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Upgrade")) {
			return bytes.Contains(bytes.ToLower(v), []byte("websocket"))
		}
	}
	return false
}

// httpListener hands connections to the net/http server behind
// Config.HTTPHandler.
type httpListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  func() net.Addr
}

func (l *httpListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *httpListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *httpListener) Addr() net.Addr { return l.addr() }

// httpWriteTimeout bounds the writing of one plain HTTP answer (the demo
// page, an API reply): past it a client that does not read is cut off.
const httpWriteTimeout = 30 * time.Second

// plainConn replays the bytes read before the hand-off, reports the
// client's address (a PROXY header's, behind a trusted proxy) and gives the
// connection's slot back when closed.
type plainConn struct {
	net.Conn
	pre  []byte
	srv  *Server
	once sync.Once
	slot slot
}

func (c *plainConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.slot.addr()) }

func (c *plainConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *plainConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.srv.releaseSlot(&c.slot) })
	return err
}

// toHTTP moves c, whose request is not an upgrade, to Config.HTTPHandler,
// with its slot. It runs on the worker that owns c, during the handshake.
func (c *Conn) toHTTP(hs *handshake) {
	s := c.srv
	pre := bytes.Clone(hs.request)
	hs.releaseRequest()
	var (
		nc  net.Conn
		err error
	)
	c.mu.Lock()
	sl := c.slot.take()
	c.mu.Unlock()
	if t := c.sock.tls; t != nil {
		// Go owns a TLS connection's fd: keep it open across destroy and
		// give tls.Conn its blocking transport back.
		t.raw.detached.Store(true)
		c.destroy(ReasonPlainHTTP)
		t.raw.nonblock.Store(false)
		nc = t.tc
	} else {
		var fd int
		r := c.sock.rec
		var ahead []byte // a TLS 1.3 record read past the request's
		if r != nil && r.in != nil {
			ahead = bytes.Clone(*r.in)
		}
		if fd, err = unix.Dup(int(c.sock.fd)); err == nil {
			if r != nil {
				r.handOff()
			}
			c.destroy(ReasonPlainHTTP)
			f := os.NewFile(uintptr(fd), "http")
			nc, err = net.FileConn(f) // dups again: f is closed below
			f.Close()
		}
		if err == nil && r != nil { // net/http reads and writes records through tlsrec
			nc = tlsrec.NewNetConn(nc, r.rec, ahead)
		}
	}
	if err != nil {
		s.log.Error("plain HTTP hand-off failed", "remote", sl.addr().String(), "err", err)
		c.destroy(ReasonIOError)
		s.releaseSlot(&sl)
		return
	}
	pc := &plainConn{Conn: nc, pre: pre, srv: s, slot: sl}
	select {
	case s.httpLn.conns <- pc:
	case <-s.httpLn.done:
		pc.Close()
	}
}

// startHTTP serves Config.HTTPHandler on the hand-off listener.
func (s *Server) startHTTP() {
	if s.cfg.HTTPHandler == nil {
		return
	}
	s.httpLn = &httpListener{conns: make(chan net.Conn), done: make(chan struct{}), addr: s.Addr}
	s.httpSrv = &http.Server{
		Handler:           s.cfg.HTTPHandler,
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		ReadTimeout:       s.cfg.HandshakeTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       s.cfg.HandshakeTimeout,
		MaxHeaderBytes:    s.cfg.MaxRequestBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(s.httpLn)
	}()
}
