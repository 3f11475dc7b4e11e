package tlsrec

import (
	"errors"
	"io"
	"net"
	"sync"
)

// NetConn is a blocking net.Conn over a Conn: for a connection taken over
// after its handshake and then handed to code that reads and writes like
// net/http does. Read and Write may run at once, each on one goroutine.
type NetConn struct {
	net.Conn
	rec   *Conn
	in    []byte // ciphertext read and not yet opened
	plain []byte // opened and not yet read
	wmu   sync.Mutex
}

// NewNetConn reads and writes records of rec over nc; pre holds bytes
// already read from nc.
func NewNetConn(nc net.Conn, rec *Conn, pre []byte) *NetConn {
	return &NetConn{Conn: nc, rec: rec, in: append([]byte(nil), pre...)}
}

// Read returns application data, io.EOF after the peer's close_notify.
func (n *NetConn) Read(p []byte) (int, error) {
	for len(n.plain) == 0 {
		m, err := RecordLen(n.in)
		if err != nil {
			return 0, err
		}
		if m > 0 && len(n.in) >= m {
			pt, err := n.rec.Open(n.in[:m])
			n.in = n.in[m:]
			if errors.Is(err, ErrCloseNotify) {
				return 0, io.EOF
			}
			if err != nil {
				return 0, err
			}
			n.plain = pt
			continue
		}
		if len(n.in) == 0 {
			n.in = nil // the next record gets a buffer of its own: plain aliases this one
		}
		buf := make([]byte, max(m, HeaderLen)-len(n.in)+4096)
		k, err := n.Conn.Read(buf)
		n.in = append(n.in, buf[:k]...)
		if k == 0 && err != nil {
			return 0, err
		}
	}
	k := copy(p, n.plain)
	n.plain = n.plain[k:]
	return k, nil
}

// Write seals p into records and writes them.
func (n *NetConn) Write(p []byte) (int, error) {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if _, err := n.Conn.Write(n.rec.Seal(nil, [][]byte{p})); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends close_notify, then closes the connection.
func (n *NetConn) Close() error {
	n.wmu.Lock()
	_, _ = n.Conn.Write(n.rec.SealAlert(nil, AlertCloseNotify))
	n.wmu.Unlock()
	return n.Conn.Close()
}
