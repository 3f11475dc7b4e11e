package server

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// testCert makes a CA-signed-like self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fanout test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

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
