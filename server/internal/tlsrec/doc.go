// Package tlsrec is a TLS 1.3 record layer (RFC 8446 section 5) for
// connections whose handshake crypto/tls has completed: it keeps only the
// traffic keys and sequence numbers, opens the peer's records in place and
// seals many plaintext buffers into as few records as fit, so a server can
// own the socket, read and write it without blocking, and hold no buffer
// while a connection is idle. It handles KeyUpdate (4.6.3, 7.2),
// close_notify and alerts (6) and rejects every other post-handshake
// message. Handshake (handshake.go) runs crypto/tls over a conn that stops
// at record boundaries and takes the traffic secrets from its key log.
//
// The package is pure: no sockets, no goroutines. A Conn's read half (Open)
// and write half (Seal, SealAlert) may be used by two goroutines at once;
// each half by one at a time.
package tlsrec
