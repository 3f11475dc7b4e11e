package tlsrec

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
)

// Records a crypto/tls client writes open here, whatever their sizes, and
// application data the client sent with its Finished is not lost to the
// handshake.
func TestConn_OpensClientRecords(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sizes := []int{1, 100, MaxPlaintext - 1, MaxPlaintext, MaxPlaintext + 1, 70000, 3}
	// The client writes as soon as its handshake is done: these records
	// reach the socket right behind its Finished, before the server's
	// handshake returns.
	dialed := make(chan *tls.Conn, 1)
	go func() {
		tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
		dialed <- tc
		if err != nil {
			return
		}
		for i, n := range sizes {
			if _, err := tc.Write(pattern(n, i)); err != nil {
				return
			}
		}
	}()
	defer func() {
		if tc := <-dialed; tc != nil {
			tc.Close()
		}
	}()
	s, err := accept(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.nc.Close()
	if s.rec == nil {
		t.Fatal("TLS 1.3 handshake not taken over")
	}
	for i, n := range sizes {
		if i%2 == 1 {
			s.rec.DropReadKeys() // rebuilt from the key by the next Open
		}
		got, err := s.readN(n)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, pattern(n, i)) {
			t.Fatalf("message %d (%d bytes) differs", i, n)
		}
	}
}

// The differential test: what Seal makes, crypto/tls reads, byte for byte,
// from buffers of every size, split and joined across records.
func TestConn_SealedRecordsReadByCryptoTLS(t *testing.T) {
	t.Parallel()
	tc, s := pair(t, nil)
	var bufs [][]byte
	var want []byte
	for i, n := range []int{0, 1, 64, 64, MaxPlaintext, 5, MaxPlaintext + 7, 40000, 0, 2} {
		b := pattern(n, i)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	sealed := s.rec.Seal(nil, bufs[:3])
	s.rec.DropWriteKeys() // rebuilt from the key by the next Seal
	sealed = s.rec.Seal(sealed, bufs[3:])
	first := len(bufs[0]) + len(bufs[1]) + len(bufs[2])
	if n := SealedLen(first) + SealedLen(len(want)-first); len(sealed) != n {
		t.Fatalf("sealed %d bytes, SealedLen says %d", len(sealed), n)
	}
	go func() { _, _ = s.nc.Write(sealed) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(tc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("crypto/tls read other bytes than were sealed")
	}
	if s.rec.Seal(nil, [][]byte{nil, {}}) != nil {
		t.Fatal("empty buffers made a record")
	}
}

// KeyUpdate both ways with crypto/tls: the server asks, the client answers
// with its own before its next record, and the data keeps flowing.
func TestConn_KeyUpdateWithCryptoTLS(t *testing.T) {
	t.Parallel()
	tc, s := pair(t, nil)
	for round := range 3 {
		in0, out0 := s.rec.in.secret, s.rec.out.secret
		s.rec.RequestKeyUpdate()
		if err := s.write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("round %d: client read %q %v", round, buf, err)
		}
		if _, err := tc.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		got, err := s.readN(4)
		if err != nil || string(got) != "pong" {
			t.Fatalf("round %d: server read %q %v", round, got, err)
		}
		if bytes.Equal(in0, s.rec.in.secret) || bytes.Equal(out0, s.rec.out.secret) {
			t.Fatalf("round %d: keys not updated both ways", round)
		}
		if s.rec.in.seq != 1 || s.rec.out.seq != 1 {
			t.Fatalf("round %d: sequence numbers %d/%d after one record under new keys", round, s.rec.in.seq, s.rec.out.seq)
		}
	}
}

// A key near its limit (5.5) is replaced before it protects one record
// too many, and the client follows.
func TestConn_KeyUpdateAtLimit(t *testing.T) {
	t.Parallel()
	tc, s := pair(t, nil)
	s.rec.out.seq = s.rec.out.suite.limit - 1
	// The sequence number is also the nonce: the client reads at its own
	// count, so the records here would not open there. Only check the
	// update is made, and that the next record is number 0 of a new key.
	sealed := s.rec.Seal(nil, [][]byte{[]byte("a"), pattern(MaxPlaintext, 1)})
	if s.rec.out.seq != 1 {
		t.Fatalf("seq %d after the update, want 1", s.rec.out.seq)
	}
	if n := len(sealed); n != 2*sealOverhead+1+MaxPlaintext+HeaderLen+5+aeadOverhead+1 {
		t.Fatalf("%d bytes: want two records and a KeyUpdate between them", n)
	}
	_ = tc
}

// close_notify both ways.
func TestConn_CloseNotify(t *testing.T) {
	t.Parallel()
	tc, s := pair(t, nil)
	if _, err := s.nc.Write(s.rec.SealAlert(nil, AlertCloseNotify)); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read %v after close_notify, want EOF", err)
	}
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.readN(1); !errors.Is(err, ErrCloseNotify) {
		t.Fatalf("server read %v, want ErrCloseNotify", err)
	}
}

// A fatal alert from the peer ends the stream as a PeerAlert.
func TestConn_PeerAlert(t *testing.T) {
	t.Parallel()
	_, s := pair(t, nil)
	// The client's write half, as the peer: seal an alert with its keys.
	peer := &Conn{}
	peer.out = half{}
	if err := peer.out.set(s.rec.in.suite, s.rec.in.secret); err != nil {
		t.Fatal(err)
	}
	peer.out.seq = s.rec.in.seq
	rec := peer.SealAlert(nil, AlertBadRecordMAC)
	if _, err := s.rec.Open(rec); err != PeerAlert(AlertBadRecordMAC) {
		t.Fatalf("got %v", err)
	}
}

// TLS 1.2 is left to crypto/tls, which still works over the HandshakeConn.
func TestHandshake_TLS12StaysWithCryptoTLS(t *testing.T) {
	t.Parallel()
	tc, s := pair(t, &tls.Config{MaxVersion: tls.VersionTLS12})
	if s.rec != nil {
		t.Fatal("a TLS 1.2 connection was taken over")
	}
	go func() { _, _ = tc.Write(pattern(40000, 3)) }()
	got := make([]byte, 40000)
	if _, err := io.ReadFull(s.tc, got); err != nil || !bytes.Equal(got, pattern(40000, 3)) {
		t.Fatalf("TLS 1.2 read: %v", err)
	}
}

// A HelloRetryRequest (the client's key share is for a group the server
// does not take) is a longer handshake with a second ClientHello: the
// takeover still finds the secrets and the first records.
func TestHandshake_HelloRetryRequest(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan *tls.Conn, 1)
	go func() {
		tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool,
			CurvePreferences: []tls.CurveID{tls.CurveP256, tls.CurveP384}}) // a P-256 share first
		dialed <- tc
		if err == nil {
			_, _ = tc.Write([]byte("after a retry"))
		}
	}()
	s, err := accept(ln, &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP384}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.nc.Close()
	tc := <-dialed
	if tc == nil {
		t.Fatal("client handshake failed")
	}
	defer tc.Close()
	if st := tc.ConnectionState(); !st.HelloRetryRequest || st.CurveID != tls.CurveP384 {
		t.Fatalf("no HelloRetryRequest: %+v", st.CurveID)
	}
	if got, err := s.readN(len("after a retry")); err != nil || string(got) != "after a retry" {
		t.Fatalf("read %q %v", got, err)
	}
}
