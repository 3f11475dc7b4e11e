package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// testCert is a self-signed certificate for 127.0.0.1 and the pool that trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) { return testutil.Cert(t, "fanout test") }

func TestTLS_EchoBroadcastAndStalls(t *testing.T) {
	cert, pool := testCert(t)
	s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, HandshakeTimeout: time.Second})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}

	// Clients stuck mid-TLS-handshake do not delay anyone.
	for range 20 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_, _ = nc.Write([]byte{0x16, 0x03, 0x01}) // a third of a record header
	}

	echo, _, err := d.Dial("wss://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	big := make([]byte, 60<<10)
	for i := range big {
		big[i] = byte(i)
	}
	for i := range 50 { // many records, some larger than one TLS record
		msg := big[:(i*1237)%len(big)]
		if err := echo.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		_ = echo.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, p, err := echo.ReadMessage(); err != nil || len(p) != len(msg) {
			t.Fatalf("echo %d: %d bytes, %v", i, len(p), err)
		}
	}

	room := make([]*websocket.Conn, 5)
	for i := range room {
		if room[i], _, err = d.Dial("wss://"+addr+"/ws", nil); err != nil {
			t.Fatal(err)
		}
		defer room[i].Close()
	}
	eventually(t, 5*time.Second, func() error {
		if n := onlyHub(t, s).Len(); n != len(room) {
			return fmt.Errorf("room has %d", n)
		}
		return nil
	})
	for m := range 100 { // each message reaches everyone, in send order
		if err := room[m%len(room)].WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "%d", m)); err != nil {
			t.Fatal(err)
		}
		for i, c := range room {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, p, err := c.ReadMessage(); err != nil || string(p) != fmt.Sprint(m) {
				t.Fatalf("client %d message %d: %q %v", i, m, p, err)
			}
		}
	}
	// Close handshake over TLS.
	_ = echo.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	if _, _, err := echo.ReadMessage(); !websocket.IsCloseError(err, 1000) {
		t.Fatalf("close: %v", err)
	}
	// The stalled handshakes are dropped after HandshakeTimeout.
	eventually(t, 5*time.Second, func() error {
		if n := s.Stats().HandshakesFailed; n < 20 {
			return fmt.Errorf("%d failed handshakes", n)
		}
		return nil
	})
}

// A frame in the same TLS record as the upgrade request is not lost.
func TestTLS_EarlyFrame(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	_, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Write(append([]byte(upgradeRequest("/echo")), clientFrame(true, ws.OpText, []byte("early over tls"))...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	h, err := ws.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, h.Length)
	if _, err := br.Read(p); err != nil || string(p) != "early over tls" {
		t.Fatalf("got %q %v", p, err)
	}
}

// A wss client that never reads is evicted once its ciphertext backlog
// passes SendQueueBytes.
func TestTLS_SlowConsumerEvicted(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, SendQueueBytes: 256 << 10})
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write([]byte(upgradeRequest("/echo"))); err != nil {
		t.Fatal(err)
	}
	frame := clientFrame(true, ws.OpBinary, make([]byte, 60<<10))
	go func() { // never reads; the echoes pile up server-side
		for range 400 {
			if _, err := tc.Write(frame); err != nil {
				return
			}
		}
	}()
	eventually(t, 10*time.Second, func() error {
		if n := s.Stats().SlowConsumers; n != 1 {
			return fmt.Errorf("evicted %d", n)
		}
		return nil
	})
}

// TLS 1.3 connections leave crypto/tls after the handshake (tls13.go) and
// TLS 1.2 ones keep it: both echo, broadcast and close alike, and only the
// former seal records here.
func TestTLS_BothVersions(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cert, pool := testCert(t)
		s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: v}}
		c, _, err := d.Dial("wss://"+addr+"/echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i, n := range []int{0, 1, 125, 16 << 10, 40 << 10} {
			msg := bytes.Repeat([]byte{byte(i + 1)}, n)
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, p, err := c.ReadMessage(); err != nil || !bytes.Equal(p, msg) {
				t.Fatalf("%s: echo of %d bytes: %d bytes, %v", tls.VersionName(v), n, len(p), err)
			}
		}
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
			t.Fatalf("%s: close: %v", tls.VersionName(v), err)
		}
		if st := s.Stats(); (st.TLSRecords > 0) != (v == tls.VersionTLS13) {
			t.Fatalf("%s: %d records sealed by tlsrec", tls.VersionName(v), st.TLSRecords)
		}
	}
}

// recordCounter counts the application data records a TLS client reads.
type recordCounter struct {
	net.Conn
	hdr     [5]byte
	hn      int // header bytes seen
	left    int // body bytes of the current record still to come
	records atomic.Int64
}

func (r *recordCounter) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left, b = r.left-k, b[k:]
			continue
		}
		k := copy(r.hdr[r.hn:], b)
		r.hn, b = r.hn+k, b[k:]
		if r.hn == len(r.hdr) {
			r.hn, r.left = 0, int(r.hdr[3])<<8|int(r.hdr[4])
			if r.hdr[0] == 23 {
				r.records.Add(1)
			}
		}
	}
	return n, err
}

// What one flush owes a TLS connection goes out as few records as fit, in
// one send: 300 frames of 100 bytes (30 KB) are two records over TLS 1.3
// (sealed here), and a few over TLS 1.2 (crypto/tls, fed in 16 KiB chunks).
func TestTLS_CorkedRecords(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	var ps []*frame.Prepared
	for i := range 300 {
		ps = append(ps, frame.NewPrepared(frame.OpBinary, bytes.Repeat([]byte{byte(i)}, 100)))
	}
	cfg := Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}
	cfg.OnConnect = func(*Conn, *Request) error { return nil }
	cfg.OnMessage = func(c *Conn, _ frame.OpCode, _ []byte) { _ = c.SendPrepared(ps...) }
	s, addr := runServer(t, cfg)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		var rc *recordCounter
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: v},
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				rc = &recordCounter{Conn: nc}
				return rc, err
			}}
		c, _, err := d.Dial("wss://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before, records := s.Stats(), rc.records.Load()
		if err := c.WriteMessage(websocket.TextMessage, []byte("go")); err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, p, err := c.ReadMessage(); err != nil || len(p) != 100 || p[0] != byte(i) {
				t.Fatalf("%s: message %d: %v %v", tls.VersionName(v), i, p, err)
			}
		}
		n := rc.records.Load() - records
		if v == tls.VersionTLS12 {
			// crypto/tls starts a connection with ~1 KiB records (dynamic
			// record sizing): a few, not one per frame.
			if n > 10 {
				t.Fatalf("%s: 300 frames came in %d records", tls.VersionName(v), n)
			}
			continue
		}
		if n != 2 {
			t.Fatalf("%s: 300 frames came in %d records, want 2", tls.VersionName(v), n)
		}
		after := s.Stats()
		if w, r := after.TLSWrites-before.TLSWrites, after.TLSRecords-before.TLSRecords; w != 1 || r != 2 {
			t.Fatalf("300 frames in %d sends and %d records, want 1 and 2", w, r)
		}
		for i := range after.RecordsPerWrite { // one send, in the bucket of 2 records
			want := before.RecordsPerWrite[i]
			if i == 1 {
				want++
			}
			if after.RecordsPerWrite[i] != want {
				t.Fatalf("records per write %v after, %v before: want one more send of 2 records", after.RecordsPerWrite, before.RecordsPerWrite)
			}
		}
	}
}

// A record that does not authenticate is answered with bad_record_mac
// (RFC 8446 6.2) and the connection closed.
func TestTLS_ForgedRecordAlerted(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Write([]byte(upgradeRequest("/echo"))); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	forged := append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{0x5a}, 40)...)
	if _, err := nc.Write(forged); err != nil { // under crypto/tls, as an attacker on the path would
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil || !strings.Contains(err.Error(), "bad record MAC") {
		t.Fatalf("read after a forged record: %v, want the bad_record_mac alert", err)
	}
	eventually(t, 5*time.Second, func() error {
		if s.Live() != 0 {
			return fmt.Errorf("%d connections live", s.Live())
		}
		return nil
	})
}

// An idle TLS 1.3 connection drops its AEAD state (the read keys when a
// read drains the socket, the write keys on a sweep tick with nothing
// sealed) and rebuilds it for the next record: pings and pongs across many
// idle sweeps, then an echo, all authenticate.
func TestTLS_IdleKeysRebuilt(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	// Pongs 1.2 s apart: a connection that reads this rarely drops its read
	// keys after each read (readKeysIdle).
	s, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, PingInterval: 1200 * time.Millisecond,
		IdleTimeout: 10 * time.Second})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, _, err := d.Dial("wss://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := make(chan []byte, 1)
	go func() { // answers the pings
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- p
		}
	}()
	eventually(t, 10*time.Second, func() error {
		if n := s.Stats().FramesOut; n < 3 {
			return fmt.Errorf("%d pings sent", n)
		}
		return nil
	})
	if err := c.WriteMessage(websocket.TextMessage, []byte("after the pings")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-msgs:
		if string(p) != "after the pings" {
			t.Fatalf("echo %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo after the idle pings")
	}
	if st := s.Stats(); st.Closed[ReasonIdleTimeout.String()] != 0 || s.Live() != 1 {
		t.Fatalf("connection closed: %v", st.Closed)
	}
}
