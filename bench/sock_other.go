//go:build !linux

package bench

import "net"

// sock is the transport under a wss connection's crypto/tls client (see
// sock_linux.go); off Linux the generator does not run and it is Go's
// net.Conn.
type sock struct{ net.Conn }
