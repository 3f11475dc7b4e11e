package tlsrec

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
)

var fuzzSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// fuzzConns returns a server Conn and the peer's (client's) Conn that seals
// what the server opens, for one of the suites.
func fuzzConns(t *testing.T, pick byte) (server, peer *Conn) {
	id := fuzzSuites[int(pick)%len(fuzzSuites)]
	secret := bytes.Repeat([]byte{pick}, suiteByID(id).hash().Size())
	other := bytes.Repeat([]byte{pick ^ 0xff}, len(secret))
	server, err := New(id, secret, other)
	if err != nil {
		t.Fatal(err)
	}
	peer, err = New(id, other, secret) // the client: its out is our in
	if err != nil {
		t.Fatal(err)
	}
	return server, peer
}

// sealInner seals inner, a record's whole inner plaintext (content, type
// byte, padding), as the peer would.
func sealInner(c *Conn, inner []byte) []byte {
	rec := append([]byte{typeApplicationData, 3, 3, 0, 0}, inner...)
	return c.seal(rec[:len(rec)-1:len(rec)-1], 0, inner[len(inner)-1])[:HeaderLen+len(inner)+aeadOverhead]
}

// FuzzOpen feeds arbitrary bytes as a record: Open never panics and never
// accepts a record nobody sealed with the key (after the first error the
// connection is over, so one record is all there is to test).
func FuzzOpen(f *testing.F) {
	// A record sealed with a key that no pick gives the server.
	other, err := New(tls.TLS_AES_128_GCM_SHA256, pattern(32, 1), pattern(32, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(byte(0), other.Seal(nil, [][]byte{[]byte("hello")}))
	f.Add(byte(1), []byte{23, 3, 3, 0, 17, 1, 2, 3})
	f.Add(byte(2), []byte{20, 3, 3, 0, 1, 1})
	f.Add(byte(0), []byte{23, 3, 3, 0x41, 0x01})
	f.Fuzz(func(t *testing.T, pick byte, data []byte) {
		server, _ := fuzzConns(t, pick)
		n, err := RecordLen(data)
		if err != nil || n == 0 || n > len(data) {
			return
		}
		if _, err := server.Open(data[:n]); err == nil {
			t.Fatalf("accepted a forged record % x", data[:n])
		}
	})
}

// FuzzOpenInner seals arbitrary inner plaintexts with the right key (so
// the fuzzer reaches content types, padding, KeyUpdate and alerts), and
// may flip one bit of the sealed record: Open never panics, returns
// application data only as RFC 8446 5.4 reads it, and rejects every
// tampered record.
func FuzzOpenInner(f *testing.F) {
	f.Add(byte(0), []byte("hello\x17"), uint16(0), byte(0))
	f.Add(byte(1), []byte("hi\x17\x00\x00\x00"), uint16(0), byte(0))
	f.Add(byte(2), []byte{24, 0, 0, 1, 1, 22}, uint16(0), byte(0))
	f.Add(byte(0), []byte{24, 0, 0, 22}, uint16(0), byte(0))
	f.Add(byte(0), []byte{2, 0, 21}, uint16(0), byte(0))
	f.Add(byte(0), []byte{1, 0, 21}, uint16(0), byte(0))
	f.Add(byte(1), []byte("x\x17"), uint16(7), byte(4))
	f.Fuzz(func(t *testing.T, pick byte, inner []byte, at uint16, flip byte) {
		if len(inner) == 0 || len(inner) > MaxCiphertext-aeadOverhead {
			return
		}
		server, peer := fuzzConns(t, pick)
		rec := sealInner(peer, inner)
		tampered := flip != 0
		if tampered {
			rec[int(at)%len(rec)] ^= flip
		}
		got, err := server.Open(rec)
		if tampered {
			// A flipped header byte may still be a valid header: only the
			// AAD check catches it; any change must fail somewhere.
			if err == nil {
				t.Fatalf("accepted a tampered record")
			}
			return
		}
		i := len(bytes.TrimRight(inner, "\x00")) - 1
		if err == nil && got != nil {
			if i < 0 || inner[i] != typeApplicationData || !bytes.Equal(got, inner[:i]) {
				t.Fatalf("returned %q from inner % x", got, inner)
			}
		}
		var e *Error
		if err != nil && !errors.As(err, &e) && !errors.Is(err, ErrCloseNotify) && !errors.As(err, new(PeerAlert)) {
			t.Fatalf("error of unknown kind: %v", err)
		}
	})
}
