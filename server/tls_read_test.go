package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"github.com/fanout-ws/fanout/frame"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// dialTLSRaw is dialRaw over TLS; with a small receive buffer when silent
// (the client never reads, so the server's sends fill up soon).
func dialTLSRaw(t *testing.T, addr string, pool *x509.CertPool, silent bool) *rawClient {
	t.Helper()
	d := &net.Dialer{Timeout: 20 * time.Second}
	if silent {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}
	}
	tc, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, nc: tc, br: bufio.NewReader(tc)}
}

// floodTLS is flood for a TLS client, without write deadlines: crypto/tls
// makes a timed-out write fail every later one. A write blocks while the
// server does not read: closing nc ends it.
func floodTLS(nc net.Conn, f []byte, limit int, stop func() bool) int {
	batch := bytes.Repeat(f, 64<<10/len(f))
	sent := 0
	for sent < limit && !stop() {
		n, err := nc.Write(batch)
		sent += n
		if err != nil {
			break
		}
	}
	return sent
}

// Issue 24 finding 3: a TLS read task gives its worker back after its read
// budget, like a plain one, even while its client keeps sending. Flooders
// outnumbering the workers, each sending small compressed frames that
// inflate to 4 KiB (60 KiB in the finding; less keeps a turn short under
// -race), must not keep another client's echo from an answer.
func TestTLS_FloodersYieldWorkers(t *testing.T) {
	cert, pool := testCert(t)
	cfg := Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Workers: 2, PingInterval: -1, IdleTimeout: -1,
		HandshakeTimeout: 10 * time.Second}
	cfg.OnConnect = func(c *Conn, req *Request) error {
		c.SetData(req.Path())
		return nil
	}
	cfg.OnMessage = func(c *Conn, op frame.OpCode, data []byte) {
		if c.Data() == "/echo" { // flooders send to /sink, which drops
			_ = c.Send(op, data)
		}
	}
	_, addr := runServer(t, cfg)
	z := zwire(true, ws.OpBinary, deflateMsg(make([]byte, 4<<10)), true)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var flooders []net.Conn
	defer func() {
		stop.Store(true)
		for _, nc := range flooders {
			nc.Close()
		}
		wg.Wait()
	}()
	for range 4 {
		c := dialTLSRaw(t, addr, pool, false)
		flooders = append(flooders, c.nc)
		if got := c.upgradeOffer("/sink", deflateOffer); got == "" {
			t.Fatal("permessage-deflate not negotiated")
		}
		_ = c.nc.SetDeadline(time.Time{})
	}
	for _, nc := range flooders {
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, nc) }()
		go func() { defer wg.Done(); floodTLS(nc, z, 1<<40, stop.Load) }()
	}
	victim := dialTLSRaw(t, addr, pool, false)
	victim.upgrade("/echo", nil)
	for i := range 3 {
		msg := fmt.Appendf(nil, "victim %d", i)
		start := time.Now()
		_ = victim.nc.SetDeadline(time.Now().Add(45 * time.Second)) // starved, it would never come; under -race and CI load a turn is slow
		victim.send(clientFrame(true, ws.OpText, msg))
		if _, p, err := victim.next(); err != nil || string(p) != string(msg) {
			t.Fatalf("echo %d during the flood: %q %v", i, p, err)
		}
		t.Logf("echo %d in %v", i, time.Since(start))
	}
}

// Issue 24 finding 9: a wss member flooding its hub is paused while the
// hub is behind, as a plain one is, instead of the hub dropping
// broadcasts past HubBacklogBytes.
func TestTLS_PublisherParked(t *testing.T) {
	cert, pool := testCert(t)
	s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, HubBacklogBytes: 1 << 20,
		PingInterval: -1, IdleTimeout: -1})
	var wg sync.WaitGroup
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
		wg.Wait()
	}()
	for range 10 {
		c := dialTLSRaw(t, addr, pool, false)
		conns = append(conns, c.nc)
		c.upgrade("/ws", nil)
		_ = c.nc.SetDeadline(time.Time{})
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, c.br) }()
	}
	pub := dialTLSRaw(t, addr, pool, false)
	pub.upgrade("/ws", nil)
	_ = pub.nc.SetDeadline(time.Time{})
	conns = append(conns, pub.nc)
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, pub.br) }() // the publisher reads its own broadcasts
	f := clientFrame(true, ws.OpBinary, make([]byte, 64))
	frames := uint64(floodTLS(pub.nc, f, 4<<20, func() bool { return false }) / len(f))
	eventually(t, 30*time.Second, func() error {
		if n := s.Stats().MessagesIn; n < frames {
			return fmt.Errorf("%d of %d messages read", n, frames)
		}
		return nil
	})
	st := s.Stats()
	t.Logf("%d broadcasts dropped, publisher paused %d times", st.BroadcastDrops, st.PublishersPaused)
	if st.BroadcastDrops != 0 {
		t.Errorf("%d broadcasts dropped; the publisher should have been paused instead", st.BroadcastDrops)
	}
	if st.PublishersPaused == 0 {
		t.Error("the publisher was never paused")
	}
}
