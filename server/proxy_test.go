package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/pires/go-proxyproto"
)

// The trusted proxy is 127.0.0.2; 127.0.0.3 plays an untrusted client that
// tries to spoof its address.
const (
	proxyIP     = "127.0.0.2"
	untrustedIP = "127.0.0.3"
)

// whoamiConfig answers every connection with the address the server sees
// for it (Conn.RemoteAddr), as its first message.
func whoamiConfig(cfg Config) Config {
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(proxyIP + "/32")}
	cfg.OnConnect = func(c *Conn, r *Request) error {
		if r.RemoteAddr != c.RemoteAddr() {
			return Reject(500, "Request.RemoteAddr differs from Conn.RemoteAddr")
		}
		return c.Send(frame.OpText, []byte(c.RemoteAddr().String()))
	}
	return cfg
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// seenAs sends prefix and an upgrade request with extra header lines, and
// returns the address the server reports, or "" with the status when it
// refused the upgrade.
func (c *rawClient) seenAs(prefix []byte, headers string) (string, int) {
	c.t.Helper()
	req := strings.Replace(upgradeRequest("/ws"), "Host: test\r\n", "Host: test\r\n"+headers, 1)
	c.send(append(prefix, req...))
	if status, _ := c.readResponse(); status != 101 {
		return "", status
	}
	_, msg, err := c.next()
	if err != nil {
		c.t.Fatal(err)
	}
	return string(msg), 101
}

func proxyV1(src string) []byte {
	ap := netip.MustParseAddrPort(src)
	fam, dst := "TCP4", "127.0.0.1"
	if ap.Addr().Is6() {
		fam, dst = "TCP6", "::1"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d 8080\r\n", fam, ap.Addr(), dst, ap.Port())
}

func proxyV2(t *testing.T, src string, local bool) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080})
	if local {
		h.Command = proxyproto.LOCAL
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProxy_ClientAddress(t *testing.T) {
	_, addr := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolOptional}))
	cases := []struct {
		name    string
		src     string
		prefix  func(t *testing.T) []byte
		headers string
		want    string // "" for the socket's own address
	}{
		{name: "direct", src: untrustedIP},
		{name: "v1", src: proxyIP, prefix: func(*testing.T) []byte { return proxyV1("203.0.113.7:5555") }, want: "203.0.113.7:5555"},
		{name: "v1 IPv6", src: proxyIP, prefix: func(*testing.T) []byte { return proxyV1("[2001:db8::7]:5555") }, want: "[2001:db8::7]:5555"},
		{name: "v2", src: proxyIP, prefix: func(t *testing.T) []byte { return proxyV2(t, "198.51.100.9:4444", false) }, want: "198.51.100.9:4444"},
		{name: "v2 LOCAL keeps the socket's", src: proxyIP, prefix: func(t *testing.T) []byte { return proxyV2(t, "198.51.100.9:4444", true) }},
		{name: "trusted XFF", src: proxyIP, headers: "X-Forwarded-For: 6.6.6.6, 192.0.2.1\r\n", want: "192.0.2.1:0"},
		{name: "XFF past a chain of trusted proxies", src: proxyIP, headers: "X-Forwarded-For: 192.0.2.1, 127.0.0.2\r\nX-Forwarded-For: 127.0.0.2\r\n", want: "192.0.2.1:0"},
		{name: "untrusted XFF ignored", src: untrustedIP, headers: "X-Forwarded-For: 203.0.113.7\r\n"},
		{name: "XFF after an untrusted PROXY client ignored", src: proxyIP, prefix: func(t *testing.T) []byte { return proxyV2(t, "198.51.100.9:4444", false) },
			headers: "X-Forwarded-For: 203.0.113.7\r\n", want: "198.51.100.9:4444"},
		{name: "Forwarded not read when X-Forwarded-For is the header", src: proxyIP, headers: "Forwarded: for=203.0.113.7\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, tc.src, addr)
			var prefix []byte
			if tc.prefix != nil {
				prefix = tc.prefix(t)
			}
			want := tc.want
			if want == "" {
				want = c.nc.LocalAddr().String()
			}
			if got, status := c.seenAs(prefix, tc.headers); got != want {
				t.Fatalf("server sees %q (status %d), want %q", got, status, want)
			}
		})
	}
}

// A PROXY header from a peer outside TrustedProxies closes the connection
// without an answer, and a trusted proxy must send one when it is required.
func TestProxy_Refused(t *testing.T) {
	_, optional := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolOptional}))
	_, required := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolRequired}))
	cases := []struct {
		name, src, addr string
		prefix          func(t *testing.T) []byte
	}{
		{name: "untrusted v1", src: untrustedIP, addr: optional, prefix: func(*testing.T) []byte { return proxyV1("203.0.113.7:5555") }},
		{name: "untrusted v2", src: untrustedIP, addr: optional, prefix: func(t *testing.T) []byte { return proxyV2(t, "203.0.113.7:5555", false) }},
		{name: "untrusted v2 under required", src: untrustedIP, addr: required, prefix: func(t *testing.T) []byte { return proxyV2(t, "203.0.113.7:5555", false) }},
		{name: "trusted without header under required", src: proxyIP, addr: required, prefix: func(*testing.T) []byte { return nil }},
		{name: "trusted with a broken v1 line", src: proxyIP, addr: optional, prefix: func(*testing.T) []byte { return []byte("PROXY TCP4 nonsense\r\n") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, tc.src, tc.addr)
			c.send(append(tc.prefix(t), upgradeRequest("/ws")...))
			if b, err := io.ReadAll(c.br); len(b) != 0 {
				t.Fatalf("server answered %q (%v), want the connection closed", b, err)
			}
		})
	}
	// Unrefused, the same server still serves the untrusted client itself.
	c := dialFrom(t, untrustedIP, required)
	if got, _ := c.seenAs(nil, ""); got != c.nc.LocalAddr().String() {
		t.Fatalf("direct client seen as %q", got)
	}
}

// A trusted proxy stalled halfway through a PROXY header holds no worker:
// others are served meanwhile, and the handshake timeout closes it.
func TestProxy_StalledHeaderTimesOut(t *testing.T) {
	_, addr := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolOptional, HandshakeTimeout: 300 * time.Millisecond, Workers: 1}))
	stalled := dialFrom(t, proxyIP, addr)
	stalled.send(proxyV2(t, "203.0.113.7:5555", false)[:20])
	c := dialFrom(t, proxyIP, addr)
	if got, _ := c.seenAs(proxyV1("192.0.2.5:1000"), ""); got != "192.0.2.5:1000" {
		t.Fatalf("seen as %q", got)
	}
	if b, err := io.ReadAll(stalled.br); len(b) != 0 || err != nil {
		t.Fatalf("stalled proxy got %q, %v; want the connection closed", b, err)
	}
}

// Per-IP limits count the client behind the proxy, not the proxy, and a
// client refused there is one failed handshake (it was counted twice).
func TestProxy_PerIPLimitUsesClient(t *testing.T) {
	s, addr := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolOptional, MaxConnsPerIP: 1}))
	for i, tc := range []struct {
		client string
		status int
	}{{"192.0.2.1:1", 101}, {"192.0.2.2:1", 101}, {"192.0.2.1:2", 429}} {
		c := dialFrom(t, proxyIP, addr)
		if _, status := c.seenAs(proxyV2(t, tc.client, false), ""); status != tc.status {
			t.Fatalf("connection %d from %s: status %d, want %d", i, tc.client, status, tc.status)
		}
	}
	c := dialFrom(t, proxyIP, addr)
	if _, status := c.seenAs(nil, "X-Forwarded-For: 192.0.2.2\r\n"); status != 429 {
		t.Fatalf("second connection of 192.0.2.2 through X-Forwarded-For: status %d, want 429", status)
	}
	if st := s.Stats(); st.HandshakesFailed != 2 || st.RejectedIP != 2 {
		t.Fatalf("two clients refused: %d failed handshakes, %d refused per IP; want 2 and 2", st.HandshakesFailed, st.RejectedIP)
	}
}

// A connection with a PROXY header belongs to the client it names, plain
// HTTP included (finding 6 of issue 24): one address holding slow-body
// requests gets 429 past MaxConnsPerIP at once, before its request is
// read, and leaves room for other clients' upgrades.
func TestProxy_PlainHTTPAdmittedPerIP(t *testing.T) {
	const perIP = 3
	body := make(chan struct{})
	cfg := whoamiConfig(Config{ProxyProtocol: ProxyProtocolRequired, MaxConnsPerIP: perIP, MaxConns: 2 * perIP,
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body <- struct{}{}
			_, _ = io.Copy(io.Discard, r.Body)
		})})
	s, addr := runServer(t, cfg)
	for i := range perIP + 2 {
		for _, v2 := range []bool{false, true} {
			if v2 && i < perIP {
				continue
			}
			c := dialFrom(t, proxyIP, addr)
			prefix := proxyV1("192.0.2.1:1000")
			if v2 {
				prefix = proxyV2(t, "192.0.2.1:1000", false)
			}
			c.send(append(prefix, "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nslow"...))
			if i < perIP {
				<-body // in the handler, reading the body slowly
				continue
			}
			if status, _ := c.readResponse(); status != 429 {
				t.Fatalf("slow request %d (v2 %v) from 192.0.2.1: status %d, want 429", i, v2, status)
			}
		}
	}
	for i := range perIP {
		c := dialFrom(t, proxyIP, addr)
		if got, status := c.seenAs(proxyV2(t, fmt.Sprintf("198.51.100.%d:1", i+1), false), ""); status != 101 {
			t.Fatalf("upgrade %d of other clients: %q %d, want 101", i, got, status)
		}
	}
	if n := s.peerCount("192.0.2.1"); n != perIP {
		t.Fatalf("192.0.2.1 counts %d connections, want %d", n, perIP)
	}
}

// Under TLS the PROXY header comes before the ClientHello.
func TestProxy_TLS(t *testing.T) {
	cert, pool := testCert(t)
	_, addr := runServer(t, whoamiConfig(Config{ProxyProtocol: ProxyProtocolRequired, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}))
	c := dialFrom(t, proxyIP, addr)
	c.send(proxyV2(t, "203.0.113.7:5555", false))
	tc := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	c.nc, c.br = tc, bufio.NewReader(tc)
	if got, status := c.seenAs(nil, ""); got != "203.0.113.7:5555" {
		t.Fatalf("seen as %q (status %d)", got, status)
	}
	u := dialFrom(t, untrustedIP, addr)
	u.send(proxyV1("203.0.113.7:5555"))
	if b, _ := io.ReadAll(u.br); len(b) != 0 {
		t.Fatalf("untrusted PROXY header under TLS answered %q", b)
	}
}

// Handler on a user's mux reads X-Forwarded-For or Forwarded from trusted
// peers only.
func TestProxy_HandlerForwarded(t *testing.T) {
	for _, header := range []string{HeaderXForwardedFor, HeaderForwarded} {
		t.Run(header, func(t *testing.T) {
			s, err := New(whoamiConfig(Config{ForwardedHeader: header}))
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(s.Handler())
			t.Cleanup(func() { hs.Close(); _ = s.Close() })
			addr := strings.TrimPrefix(hs.URL, "http://")
			value := "203.0.113.7"
			if header == HeaderForwarded {
				value = `for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"`
			}
			want := map[string]string{HeaderXForwardedFor: "203.0.113.7:0", HeaderForwarded: "[2001:db8:cafe::17]:4711"}[header]
			c := dialFrom(t, proxyIP, addr)
			if got, status := c.seenAs(nil, header+": "+value+"\r\n"); got != want {
				t.Fatalf("through the proxy: seen as %q (status %d), want %q", got, status, want)
			}
			u := dialFrom(t, untrustedIP, addr)
			if got, status := u.seenAs(nil, header+": "+value+"\r\n"); got != u.nc.LocalAddr().String() {
				t.Fatalf("untrusted: seen as %q (status %d), want its own address", got, status)
			}
		})
	}
}

func TestProxy_ForwardedFor(t *testing.T) {
	s := &Server{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	peer := netip.MustParseAddrPort("10.0.0.1:80")
	cases := []struct {
		name, header string
		values       []string
		want         string
	}{
		{"empty", HeaderXForwardedFor, nil, "10.0.0.1:80"},
		{"one", HeaderXForwardedFor, []string{"192.0.2.1"}, "192.0.2.1:0"},
		{"spoofed left part", HeaderXForwardedFor, []string{"1.1.1.1, 192.0.2.1, 10.0.0.7"}, "192.0.2.1:0"},
		{"all trusted", HeaderXForwardedFor, []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9:0"},
		{"garbage stops the walk", HeaderXForwardedFor, []string{"1.1.1.1, garbage, 10.0.0.7"}, "10.0.0.7:0"},
		{"port and IPv6", HeaderXForwardedFor, []string{"[2001:db8::1]:99"}, "[2001:db8::1]:99"},
		{"mapped IPv4", HeaderXForwardedFor, []string{"::ffff:192.0.2.1"}, "192.0.2.1:0"},
		{"forwarded", HeaderForwarded, []string{`for=192.0.2.43;proto=https, for="10.0.0.3:1"`}, "192.0.2.43:0"},
		{"forwarded obfuscated", HeaderForwarded, []string{`for=_hidden, for=192.0.2.1`}, "192.0.2.1:0"},
		{"forwarded unknown stops", HeaderForwarded, []string{`for=unknown`}, "10.0.0.1:80"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.forwardedFor(peer, tc.header, tc.values).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestProxy_HeaderLen(t *testing.T) {
	v2 := proxyV2(t, "192.0.2.1:1", false)
	cases := []struct {
		name string
		b    []byte
		want int
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), 0},
		{"v1 partial signature", []byte("PRO"), -1},
		{"v1 partial line", []byte("PROXY TCP4 1.2.3.4"), -1},
		{"v1", []byte("PROXY UNKNOWN\r\nGET"), 15},
		{"v1 too long", []byte("PROXY " + strings.Repeat("x", 200)), 107},
		{"v2 partial", v2[:15], -1},
		{"v2 body partial", v2[:len(v2)-1], -1},
		{"v2", append(v2, "GET"...), len(v2)},
		{"v2 look-alike", []byte("\r\n\r\nGET"), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := proxyHeaderLen(tc.b); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestConfig_ProxyValidation(t *testing.T) {
	for _, cfg := range []Config{
		{ProxyProtocol: ProxyProtocolRequired},
		{ProxyProtocol: 7, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{ForwardedHeader: "X-Real-IP"},
	} {
		if cfg.Validate() == nil {
			t.Errorf("%+v validated", cfg)
		}
	}
	var p ProxyProtocol
	if err := p.UnmarshalText([]byte("Required")); err != nil || p != ProxyProtocolRequired {
		t.Fatalf("UnmarshalText: %v, %v", p, err)
	}
	if p.UnmarshalText([]byte("yes")) == nil {
		t.Fatal("UnmarshalText accepted yes")
	}
}
