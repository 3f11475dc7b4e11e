package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"golang.org/x/sys/unix"
)

// heldConn passes writes through until hold is set, then keeps them for
// one socket write (flush).
type heldConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (h *heldConn) Write(p []byte) (int, error) {
	if h.hold {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

func (h *heldConn) flush() error {
	h.hold = false
	_, err := h.Conn.Write(h.buf)
	return err
}

// tlsConfig is a server's, with a fresh self-signed ECDSA P-256 certificate.
func tlsConfig(t *testing.T) *tls.Config {
	cert, _ := testutil.Cert(t, "bench test")
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// roomFrame is message seq of publisher 0 as a server frame.
func roomFrame(seq int) []byte {
	p := make([]byte, 64)
	stamp(p, joinSeq(0, uint64(seq)))
	return frame.AppendFrame(nil, frame.OpBinary, p)
}

// Frames a server sends with its 101, each in a record of its own and in
// one socket write, reach crypto/tls with the upgrade's last read, where no
// readiness event announces them: a wss subscriber still receives every
// one, in order, and then what follows on the poller.
func TestGroup_WSSRecordsReadWithTheUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const early, late = 3, 5 // early: within the 512 bytes crypto/tls reads past a record header
	served := make(chan error, 1)
	more, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() { served <- serveRecords(ln, tlsConfig(t), early, late, more, release) }()
	cfg := Config{URLs: []string{"wss://" + ln.Addr().String() + "/ws"}, Scenario: ScenarioBroadcast, Conns: 1, Rate: 1, Insecure: true}.withDefaults()
	g, err := newGroup(cfg, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	g.measuring.Store(true)
	if err := g.open(context.Background(), newDialer(cfg), 0, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{early, early + late} {
		testutil.Eventually(t, 5*time.Second, func() error {
			if n := g.st.received.Load(); n != want {
				return fmt.Errorf("received %d of %d", n, want)
			}
			return nil
		})
		if want == early {
			close(more)
		}
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if lost, re := g.st.lost.Load(), g.st.reordered.Load(); lost != 0 || re != 0 {
		t.Fatalf("%d lost, %d reordered", lost, re)
	}
}

// serveRecords accepts one wss client, answers its upgrade with a 101 and
// early frames in one socket write, then on more sends late frames one by
// one, and holds the connection until release.
func serveRecords(ln net.Listener, cfg *tls.Config, early, late int, more, release chan struct{}) error {
	raw, err := ln.Accept()
	if err != nil {
		return err
	}
	defer raw.Close()
	hc := &heldConn{Conn: raw}
	tc := tls.Server(hc, cfg)
	req, err := http.ReadRequest(bufio.NewReader(tc))
	if err != nil {
		return err
	}
	req.Body.Close()
	hc.hold = true
	fmt.Fprint(tc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	for i := range early {
		_, _ = tc.Write(roomFrame(i + 1))
	}
	if err := hc.flush(); err != nil {
		return err
	}
	select {
	case <-more:
	case <-release:
		return nil
	}
	for i := range late {
		if _, err := tc.Write(roomFrame(early + i + 1)); err != nil {
			return err
		}
	}
	go func() { <-release; raw.Close() }()
	return nil
}

// The generator's sockets have no TCP keepalive: the server pings them, and
// a million sockets probed every 15 s would load the machine being measured.
func TestDialer_NoKeepalive(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nd := newDialer(Config{SourceIPs: 2}).netDialer(1)
	c, err := nd.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	_ = rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
	if gerr != nil || v != 0 {
		t.Fatalf("SO_KEEPALIVE %d (%v)", v, gerr)
	}
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.3" {
		t.Fatalf("source address %s, want 127.0.0.3 (index 1 of 127.0.0.2..3)", got)
	}
}
