package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/pires/go-proxyproto"
)

// Behind a load balancer the socket's peer is the proxy. A trusted proxy
// (Config.TrustedProxies) tells the client's own address in a PROXY protocol
// header ahead of the stream (Config.ProxyProtocol) or in a forwarding
// header (Config.ForwardedHeader); from any other peer a forwarding header
// is ignored and a PROXY header refused. Per-IP limits, logs and
// Conn.RemoteAddr use the client's address, so a connection from a trusted
// proxy is admitted per IP once that address is known (admission.go).

// ProxyProtocol says whether connections from trusted proxies start with a
// PROXY protocol header (v1 text or v2 binary, as HAProxy's send-proxy and
// send-proxy-v2 write it).
type ProxyProtocol uint8

const (
	ProxyProtocolOff      ProxyProtocol = iota // no header expected; one would be a malformed request
	ProxyProtocolOptional                      // trusted proxies may send one
	ProxyProtocolRequired                      // trusted proxies must send one; without it the connection is closed
)

var proxyProtocolNames = [...]string{"off", "optional", "required"}

func (p ProxyProtocol) String() string {
	if int(p) < len(proxyProtocolNames) {
		return proxyProtocolNames[p]
	}
	return fmt.Sprintf("ProxyProtocol(%d)", p)
}

// MarshalText gives the name flags and configs use.
func (p ProxyProtocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText accepts off, optional or required.
func (p *ProxyProtocol) UnmarshalText(b []byte) error {
	for i, n := range proxyProtocolNames {
		if strings.EqualFold(string(b), n) {
			*p = ProxyProtocol(i)
			return nil
		}
	}
	return fmt.Errorf("server: proxy protocol %q: want off, optional or required", b)
}

// The forwarding headers Config.ForwardedHeader may name.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded" // RFC 7239
	HeaderNone          = "none"      // trust no forwarding header
)

var (
	proxySigV1 = []byte("PROXY ")
	proxySigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// trusted reports whether ip is one of Config.TrustedProxies.
func (s *Server) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyHeaderLen is the length of the PROXY header b starts with: 0 when b
// does not start with one, -1 when b is too short to tell or to hold it.
func proxyHeaderLen(b []byte) int {
	switch {
	case isPrefix(b, proxySigV1):
		if len(b) < len(proxySigV1) {
			return -1
		}
		if i := bytes.IndexByte(b[:min(len(b), 107)], '\n'); i >= 0 {
			return i + 1
		}
		if len(b) >= 107 { // the longest v1 line: let the parser refuse it
			return 107
		}
		return -1
	case isPrefix(b, proxySigV2):
		if len(b) < 16 {
			return -1
		}
		n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if len(b) < n {
			return -1
		}
		return n
	}
	return 0
}

// isPrefix reports whether b and sig agree over their common length.
func isPrefix(b, sig []byte) bool {
	n := min(len(b), len(sig))
	return bytes.Equal(b[:n], sig[:n])
}

// parseProxyHeader parses the complete PROXY header h. The address is
// invalid for a LOCAL (health check) or UNKNOWN header: the socket's
// address stands.
func parseProxyHeader(h []byte) (netip.AddrPort, error) {
	hdr, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(h), max(len(h), 16)))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server: PROXY header: %w", err)
	}
	if a, ok := hdr.SourceAddr.(*net.TCPAddr); ok && hdr.Command.IsProxy() {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	return netip.AddrPort{}, nil
}

// takeProxyHeader handles a PROXY header at the start of the bytes
// collected so far: from a trusted proxy it takes the client's address,
// admits the client per IP and removes the header; from anyone else it
// refuses the connection. ready is false while more bytes are needed; ok is
// false once c is closed, or when a TLS connection's client was refused
// (status: acceptTLS answers it).
func (c *Conn) takeProxyHeader(hs *handshake) (ready, ok bool) {
	s := c.srv
	n := proxyHeaderLen(hs.request)
	switch {
	case n < 0 && len(hs.request) >= s.cfg.MaxRequestBytes:
		c.refuseProxy(errors.New("PROXY header too large"))
		return false, false
	case n < 0:
		return false, true
	case n > 0 && !hs.viaProxy:
		c.refuseProxy(errors.New("PROXY header from an untrusted peer"))
		return false, false
	case n == 0 && hs.viaProxy && s.cfg.ProxyProtocol == ProxyProtocolRequired:
		c.refuseProxy(errors.New("no PROXY header from a trusted proxy"))
		return false, false
	case n > 0:
		client, err := parseProxyHeader(hs.request[:n])
		if err != nil {
			c.refuseProxy(err)
			return false, false
		}
		hs.request = append(hs.request[:0], hs.request[n:]...)
		if client.IsValid() {
			// The connection is this client's alone, plain HTTP included.
			if hs.refuse = c.admitClient(client); hs.refuse != 0 {
				if c.sock.tls == nil {
					c.refuseClient(hs.refuse)
				}
				return false, false
			}
		}
	}
	hs.proxyDone = true
	return true, true
}

// refuseProxy closes a connection whose PROXY header is missing, invalid or
// not allowed, without an answer: the peer may not even speak HTTP.
func (c *Conn) refuseProxy(err error) {
	c.srv.warnSampled("PROXY protocol; connection closed", "remote", c.slot.addr().String(), "err", err.Error())
	c.failHandshake(err, nil)
}

// admitForwarded admits per IP the client a trusted proxy names in a
// forwarding header, once head (the complete request head) is known, for
// an upgrade: a plain HTTP request is not admitted per IP, as a proxy's
// keep-alive connection carries requests of many clients. It returns 0 or
// the status that refuses the client.
func (c *Conn) admitForwarded(hs *handshake, head []byte) int {
	s := c.srv
	h := s.cfg.ForwardedHeader
	if !hs.viaProxy || h == HeaderNone || !wantsUpgrade(head) {
		return 0
	}
	peer := c.slot.addr() // the proxy's, or the one its PROXY header gave
	if !s.trusted(peer.Addr()) {
		return 0 // admitted already
	}
	return c.admitClient(s.forwardedFor(peer, h, headerValues(head, h)))
}

// headerValues returns the values of every name: line of a request head.
func headerValues(head []byte, name string) []string {
	var vs []string
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			vs = append(vs, string(bytes.TrimSpace(v)))
		}
	}
	return vs
}

// forwardedFor walks the hops a forwarding header lists from the nearest
// back, past trusted proxies, and returns the first address that is not
// one: the client. An unparsable hop ends the walk at the last address
// known. peer, the socket's (or PROXY header's) address, must be trusted.
func (s *Server) forwardedFor(peer netip.AddrPort, header string, values []string) netip.AddrPort {
	var hops []string
	for _, v := range values {
		for hop := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	addr := peer
	for i := len(hops) - 1; i >= 0 && s.trusted(addr.Addr()); i-- {
		hop := hops[i]
		if header == HeaderForwarded {
			hop = forwardedNode(hop)
		}
		a, ok := parseHop(hop)
		if !ok {
			break
		}
		addr = a
	}
	return addr
}

// forwardedNode is the for= node of one RFC 7239 forwarded-element.
func forwardedNode(elem string) string {
	for pair := range strings.SplitSeq(elem, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if strings.EqualFold(k, "for") {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// parseHop reads "ip", "ip:port", "[ipv6]" or "[ipv6]:port".
func parseHop(h string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}

// clientOf is the client's address for a request on Handler: the peer, or
// what a trusted peer's forwarding header says.
func (s *Server) clientOf(r *http.Request) netip.AddrPort {
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if h := s.cfg.ForwardedHeader; h != HeaderNone && s.trusted(remote.Addr()) {
		return s.forwardedFor(remote, h, r.Header.Values(h))
	}
	return remote
}

// readProxyTLS reads a trusted proxy's PROXY header ahead of the TLS
// ClientHello, on acceptTLS's goroutine under the handshake deadline. The
// bytes read past it go back to crypto/tls through raw. It returns false
// once c is closed or its client refused (hs.refuse).
func (c *Conn) readProxyTLS(hs *handshake, nc net.Conn, raw *tlsRaw) bool {
	var buf [256]byte
	for !hs.proxyDone {
		n, err := nc.Read(buf[:])
		if n == 0 && err != nil {
			c.endHandshake(nil, ReasonHandshakeFailed)
			return false
		}
		hs.request = append(hs.request, buf[:n]...)
		if ready, ok := c.takeProxyHeader(hs); !ok {
			raw.pre = bytes.Clone(hs.request)
			return false
		} else if ready {
			break
		}
	}
	raw.pre = bytes.Clone(hs.request)
	hs.releaseRequest()
	return true
}
