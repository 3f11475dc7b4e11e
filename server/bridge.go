package server

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"time"

	"github.com/fanout-ws/fanout/poller"
	"golang.org/x/sys/unix"
)

// bridgeWriteTimeout bounds one write to a bridged TLS client: a client
// that takes no bytes for this long is cut off.
const bridgeWriteTimeout = 30 * time.Second

// hijackedSocket returns an fd the poller can own for a connection Handler
// hijacked. A plain TCP connection gives its own. A *tls.Conn (Handler
// behind an HTTPS server) cannot: Go's TLS stack owns its socket and
// blocks on it, so the engine gets one end of a Unix socket pair and two
// goroutines copy plaintext between the other end and the tls.Conn. That
// costs two goroutines and two more fds per connection (admission counts
// them: bridgeFDs); for fan-out at scale, serve wss with Config.TLS, which
// keeps TLS on the poller.
func (s *Server) hijackedSocket(nc net.Conn) (int, error) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return poller.Detach(nc)
	}
	fds, err := socketPair()
	if err != nil {
		tc.Close()
		return -1, err
	}
	f := os.NewFile(uintptr(fds[1]), "tls-bridge")
	peer, err := net.FileConn(f) // a dup: f is closed below
	f.Close()
	if err == nil {
		err = unix.SetNonblock(fds[0], true)
	}
	if err != nil {
		unix.Close(fds[0])
		tc.Close()
		return -1, err
	}
	go bridgeIn(peer.(*net.UnixConn), tc)
	go bridgeOut(tc, peer)
	return fds[0], nil
}

// bridgeIn copies what the client sends to the engine; when the client is
// gone the engine reads EOF.
func bridgeIn(peer *net.UnixConn, tc *tls.Conn) {
	_, _ = io.Copy(peer, tc)
	_ = peer.CloseWrite()
}

// bridgeOut copies what the engine sends to the client until the engine
// closes its end (after its close frame), then closes both.
func bridgeOut(tc *tls.Conn, peer net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := peer.Read(buf)
		if n > 0 {
			_ = tc.SetWriteDeadline(time.Now().Add(bridgeWriteTimeout))
			if _, werr := tc.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	tc.Close()
	peer.Close()
}
