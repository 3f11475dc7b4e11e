package tlsrec

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// testCert is a self-signed certificate for 127.0.0.1 and the pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) { return testutil.Cert(t, "tlsrec test") }

// server is the server end of a real loopback connection after Takeover.
type server struct {
	nc    net.Conn
	rec   *Conn
	tc    *tls.Conn // kept only when Takeover declined (TLS 1.2)
	pre   []byte
	plain []byte // application data opened and not yet taken
}

// accept runs the server handshake on one connection of ln.
func accept(ln net.Listener, cfg *tls.Config) (*server, error) {
	nc, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	h := &HandshakeConn{Conn: nc}
	tc := tls.Server(h, Config(cfg))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	rec, pre, err := h.Takeover(tc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s := &server{nc: nc, rec: rec, pre: pre}
	if rec == nil {
		s.tc = tc
	}
	return s, nil
}

// record reads one whole record from the socket (after s.pre).
func (s *server) record() ([]byte, error) {
	buf := s.pre
	s.pre = nil
	for {
		n, err := RecordLen(buf)
		if err != nil {
			return nil, err
		}
		if n > 0 && len(buf) >= n {
			s.pre = buf[n:]
			return buf[:n:n], nil
		}
		need := max(n, HeaderLen) - len(buf)
		more := make([]byte, need)
		if _, err := io.ReadFull(s.nc, more); err != nil {
			return nil, err
		}
		buf = append(buf, more...)
	}
}

// readN opens records until it holds n bytes of application data.
func (s *server) readN(n int) ([]byte, error) {
	for len(s.plain) < n {
		rec, err := s.record()
		if err != nil {
			return nil, err
		}
		pt, err := s.rec.Open(rec)
		if err != nil {
			return nil, err
		}
		s.plain = append(s.plain, pt...)
	}
	out := s.plain[:n]
	s.plain = s.plain[n:]
	return out, nil
}

// write seals bufs and writes them in one call.
func (s *server) write(bufs ...[]byte) error {
	_, err := s.nc.Write(s.rec.Seal(nil, bufs))
	return err
}

// pair dials a crypto/tls client to a fresh server.
func pair(t *testing.T, clientCfg *tls.Config) (*tls.Conn, *server) {
	t.Helper()
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		s   *server
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := accept(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		done <- result{s, err}
	}()
	if clientCfg == nil {
		clientCfg = &tls.Config{}
	}
	clientCfg.RootCAs = pool
	tc, err := tls.Dial("tcp", ln.Addr().String(), clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.s.nc.Close() })
	return tc, r.s
}

// pattern is n bytes that differ at every offset of a record.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}
