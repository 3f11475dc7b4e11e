package tlsrec

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
)

// HandshakeConn is the transport under a crypto/tls server whose
// connection Takeover hands to a Conn once the handshake is done. Its reads
// stop at record boundaries (one header, then at most the rest of that
// record), so crypto/tls never takes a record past the client's Finished:
// the records that follow stay in the socket (or in Pre) for Open.
type HandshakeConn struct {
	net.Conn
	// Pre holds bytes read from the socket ahead of crypto/tls (after a
	// PROXY header, say): they are read first.
	Pre []byte

	hdr    [HeaderLen]byte
	hn     int // bytes of hdr read
	left   int // bytes of the current record's body still to read
	done   bool
	client []byte // the application traffic secrets, from the key log
	server []byte
}

// Read reads at most to the end of the current record's header or body.
func (h *HandshakeConn) Read(p []byte) (int, error) {
	if h.done {
		return h.read(p)
	}
	if h.left == 0 {
		p = p[:min(len(p), HeaderLen-h.hn)]
	} else {
		p = p[:min(len(p), h.left)]
	}
	n, err := h.read(p)
	if h.left > 0 {
		h.left -= n
		return n, err
	}
	h.hn += copy(h.hdr[h.hn:], p[:n])
	if h.hn == HeaderLen {
		h.left, h.hn = int(binary.BigEndian.Uint16(h.hdr[3:])), 0
	}
	return n, err
}

func (h *HandshakeConn) read(p []byte) (int, error) {
	if len(h.Pre) > 0 {
		n := copy(p, h.Pre)
		h.Pre = h.Pre[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// Config returns a copy of base for servers over HandshakeConns: each
// handshake gets a copy whose key log hands its connection the traffic
// secrets (and still writes to base's KeyLogWriter, if any), and which
// sends no session ticket, so the server's first application record is
// number 0. base's GetConfigForClient, if any, still chooses the config.
func Config(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	choose := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg
		if choose != nil {
			chosen, err := choose(hello)
			if err != nil {
				return nil, err
			}
			if chosen != nil {
				c = chosen
			}
		}
		h, ok := hello.Conn.(*HandshakeConn)
		if !ok {
			return nil, nil
		}
		c = c.Clone()
		c.GetConfigForClient = nil
		c.KeyLogWriter = &keyLog{h: h, next: c.KeyLogWriter}
		c.SessionTicketsDisabled = true
		return c, nil
	}
	return cfg
}

// keyLog takes one handshake's NSS key log lines (one per Write).
type keyLog struct {
	h    *HandshakeConn
	next io.Writer
}

func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) == 3 {
		switch string(f[0]) {
		case "CLIENT_TRAFFIC_SECRET_0":
			k.h.client, _ = hex.AppendDecode(nil, f[2])
		case "SERVER_TRAFFIC_SECRET_0":
			k.h.server, _ = hex.AppendDecode(nil, f[2])
		}
	}
	if k.next != nil {
		return k.next.Write(line)
	}
	return len(line), nil
}

// Takeover returns the record layer of tc, a server over h whose handshake
// completed, with the bytes h read ahead that follow the handshake (the
// first records to Open). From then on tc must be neither used nor closed
// (its close_notify would carry a stale sequence number): close the
// underlying connection instead. It returns a nil Conn, and h reads
// through, when the handshake was not TLS 1.3 under Config: tc stays in
// charge.
func (h *HandshakeConn) Takeover(tc *tls.Conn) (*Conn, []byte, error) {
	h.done = true
	client, server := h.client, h.server
	h.client, h.server = nil, nil
	st := tc.ConnectionState()
	if !st.HandshakeComplete || st.Version != tls.VersionTLS13 || client == nil || server == nil {
		return nil, nil, nil
	}
	if h.hn != 0 || h.left != 0 {
		return nil, nil, errors.New("tlsrec: handshake ended inside a record")
	}
	c, err := New(st.CipherSuite, client, server)
	if err != nil {
		return nil, nil, err
	}
	pre := h.Pre
	h.Pre = nil
	return c, pre, nil
}
