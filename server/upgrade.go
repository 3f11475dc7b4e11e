package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// Request is what OnConnect sees of the upgrade request.
type Request struct {
	URI        string      // request target: path and query
	Host       string      // Host header
	Header     http.Header // other headers (Origin, Cookie, Authorization, ...)
	Protocols  []string    // offered Sec-WebSocket-Protocol values
	RemoteAddr netip.AddrPort
}

// Path is the path part of URI.
func (r *Request) Path() string {
	p, _, _ := strings.Cut(r.URI, "?")
	return p
}

// Query parses the query part of URI.
func (r *Request) Query() url.Values {
	_, q, _ := strings.Cut(r.URI, "?")
	v, _ := url.ParseQuery(q)
	return v
}

// handshake is a connection's state until its 101, owned by the handshake
// code (this file, proxy.go, tls.go) and dropped at the 101 so that an open
// connection does not carry it.
type handshake struct {
	request   []byte       // pooled, while the upgrade request is incomplete
	attached  []func(bool) // DeferUntilAttached's calls, run by track (or by destroy, with false); under Conn.mu
	refuse    int          // the status admission refused a TLS connection's PROXY client with, answered by acceptTLS
	viaProxy  bool         // the peer is a trusted proxy: its client is admitted per IP once known (admission.go)
	proxyDone bool         // the PROXY header, if any, is handled
}

// DeferUntilAttached keeps f until c has its socket, the moment from which
// a Hub.Join delivers every broadcast to c, and reports true. A connection
// from Serve has its socket from the start, and one from Handler once its
// upgrade completes, after OnConnect: f then runs on the upgrading
// goroutine, before c's first message is read, with true; or with false if
// c closes first. DeferUntilAttached reports false, and never calls f, when
// c already has its socket or is closed: act at once.
func (c *Conn) DeferUntilAttached(f func(attached bool)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock.fd >= 0 || c.life.current() == stateClosed || c.hs == nil {
		return false
	}
	c.hs.attached = append(c.hs.attached, f)
	return true
}

// runAttached runs the calls DeferUntilAttached kept.
func runAttached(fs []func(bool), attached bool) {
	for _, f := range fs {
		f(attached)
	}
}

// startHandshake gives a new Conn, not yet shared, its handshake part.
func (c *Conn) startHandshake(viaProxy bool) {
	c.hs = &handshake{viaProxy: viaProxy}
}

// end ends the handshake of a Conn closed for reason (the caller holds
// Conn.mu): it reports whether that counts as a failed handshake, and
// returns DeferUntilAttached's calls. hs may be nil: no handshake.
func (hs *handshake) end(reason CloseReason) (failed bool, attached []func(bool)) {
	if hs == nil {
		return false, nil
	}
	return reason.failsHandshake(), hs.takeAttached()
}

// takeAttached returns DeferUntilAttached's calls and forgets them; the
// caller holds Conn.mu. hs may be nil.
func (hs *handshake) takeAttached() []func(bool) {
	if hs == nil {
		return nil
	}
	fs := hs.attached
	hs.attached = nil
	return fs
}

var requestBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// handshakeBytes takes bytes read during the handshake: the request, then
// the first frames that came with it. It returns false once c must not be
// read again.
func (c *Conn) handshakeBytes(data []byte) bool {
	hs := c.hs
	rest, ok := c.collectRequest(hs, data)
	if !ok || rest == nil {
		return ok
	}
	ok = c.consumeFrames(rest)
	hs.releaseRequest() // rest lived in the request buffer
	return ok
}

// collectRequest appends handshake bytes read without blocking. When the
// request is complete it upgrades and returns the bytes that followed the
// request (the first frame bytes, possibly empty but non-nil; they live in
// hs's request buffer until hs.releaseRequest); while incomplete it returns
// nil, true. ok is false once c is closed.
func (c *Conn) collectRequest(hs *handshake, data []byte) (rest []byte, ok bool) {
	if hs.request == nil {
		hs.request = (*requestBufs.Get().(*[]byte))[:0]
	}
	limit := c.srv.cfg.MaxRequestBytes
	hs.request = append(hs.request, data...) // bytes past the head are frames (or a body): keep them
	if !hs.proxyDone && c.srv.cfg.ProxyProtocol != ProxyProtocolOff {
		if ready, ok := c.takeProxyHeader(hs); !ready {
			return nil, ok
		}
	}
	end := headerEnd(hs.request)
	if end < 0 || end > limit {
		if len(hs.request) >= limit {
			c.failHandshake(errors.New("request header too large"), httpError(http.StatusRequestHeaderFieldsTooLarge, "request header too large"))
			return nil, false
		}
		return nil, true
	}
	head := hs.request[:end]
	if status := c.admitForwarded(hs, head); status != 0 {
		c.refuseClient(status)
		return nil, false
	}
	if c.srv.cfg.HTTPHandler != nil && !wantsUpgrade(head) {
		c.toHTTP(hs)
		return nil, false
	}
	if !c.upgrade(head) {
		return nil, false
	}
	return hs.request[end:len(hs.request):len(hs.request)], true
}

// headerEnd returns the offset just past the blank line that ends an HTTP
// request head, or -1.
func headerEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

func (hs *handshake) releaseRequest() {
	if hs != nil && hs.request != nil {
		b := hs.request[:0]
		hs.request = nil
		requestBufs.Put(&b)
	}
}

// httpError is a complete HTTP/1.1 error response that closes the
// connection, with extra header fields ("Retry-After: 1"), if any.
func httpError(status int, text string, fields ...string) []byte {
	b := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for _, f := range fields {
		b = append(append(b, f...), "\r\n"...)
	}
	return fmt.Appendf(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n", len(text)+1, text)
}

// handshakeIO gives gobwas/ws's Upgrader the complete request from memory
// and captures its response, so it never touches the socket.
type handshakeIO struct {
	r bytes.Reader
	w bytes.Buffer
}

func (h *handshakeIO) Read(p []byte) (int, error)  { return h.r.Read(p) }
func (h *handshakeIO) Write(p []byte) (int, error) { return h.w.Write(p) }

// upgrade runs the gobwas/ws Upgrader (zero-copy hooks) over the complete
// request and queues the 101 ahead of anything OnConnect sent.
func (c *Conn) upgrade(head []byte) bool {
	s := c.srv
	if err := checkKeyAndHost(headerValues(head, "Sec-WebSocket-Key"), len(headerValues(head, "Host"))); err != nil {
		c.failHandshake(err, httpError(http.StatusBadRequest, err.Error()))
		return false
	}
	req := Request{Header: make(http.Header), RemoteAddr: c.slot.addr()}
	var rejected error
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error { req.URI = string(uri); return nil },
		OnHost:    func(host []byte) error { req.Host = string(host); return nil },
		OnHeader: func(k, v []byte) error {
			req.Header.Add(string(k), string(v))
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			req.Protocols = appendProtocols(req.Protocols, string(v))
			return s.protocolName(s.selectProtocol(req.Protocols)), true
		},
		Negotiate: c.negotiate,
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if err := s.onConnect(c, &req); err != nil {
				rejected = err
				return nil, rejectionFor(err)
			}
			return nil, nil
		},
	}
	hio := &handshakeIO{}
	hio.r.Reset(head)
	hs, err := u.Upgrade(hio)
	if err != nil {
		if rejected != nil {
			err = rejected
		}
		resp := hio.w.Bytes()
		if len(resp) == 0 { // gobwas/ws answers nothing to an unparsable request line
			resp = httpError(http.StatusBadRequest, "malformed request")
		}
		c.failHandshake(err, resp)
		return false
	}
	s.stats.upgraded.Add(1)
	if c.neg.zbits != 0 {
		s.stats.compressedConns.Add(1)
	}
	s.log.Debug("upgraded", "conn", c.id, "remote", c.slot.addr().String(), "uri", req.URI)
	c.neg.proto = s.selectProtocol(req.Protocols)
	if s.protocolName(c.neg.proto) != hs.Protocol {
		c.neg.proto = 0 // gobwas/ws answered none
	}
	c.mu.Lock()
	c.life.open()
	c.hs = nil
	c.out.pushFront(hio.w.Bytes())
	c.mu.Unlock()
	c.releaseNow()
	return true
}

// checkKeyAndHost applies what gobwas/ws does not check of RFC 6455 4.1
// and 4.2.1: exactly one Host and one Sec-WebSocket-Key, the key being the
// base64 of 16 bytes (a 24-character string is not enough).
func checkKeyAndHost(keys []string, hosts int) error {
	switch {
	case hosts != 1:
		return fmt.Errorf("server: %d Host header fields, want one", hosts)
	case len(keys) != 1:
		return fmt.Errorf("server: %d Sec-WebSocket-Key header fields, want one", len(keys))
	}
	if b, err := base64.StdEncoding.Strict().DecodeString(keys[0]); err != nil || len(b) != 16 {
		return errors.New("server: Sec-WebSocket-Key is not the base64 of 16 bytes")
	}
	return nil
}

// onConnect checks the origin, then runs OnConnect, if any.
func (s *Server) onConnect(c *Conn, r *Request) error {
	if !originAllowed(s.cfg.AllowedOrigins, r.Header.Get("Origin")) {
		s.warnSampled("origin rejected", "remote", r.RemoteAddr.String(), "origin", r.Header.Get("Origin"))
		return errOrigin
	}
	if s.cfg.Auth.Checks() {
		claims, err := s.cfg.Auth.authenticate(r)
		if err != nil {
			s.stats.authFailures.Add(1)
			s.warnSampled("authentication failed", "remote", r.RemoteAddr.String(), "err", err.Error())
			return errUnauthorized
		}
		c.SetClaims(claims)
	}
	if s.cfg.OnConnect == nil {
		return nil
	}
	return s.cfg.OnConnect(c, r)
}

// appendProtocols appends the entries of one Sec-WebSocket-Protocol
// header value.
func appendProtocols(dst []string, v string) []string {
	for p := range strings.SplitSeq(v, ",") {
		dst = append(dst, strings.TrimSpace(p))
	}
	return dst
}

// selectProtocol picks the first of Config.Subprotocols that the client
// offered: 1 + its index, or 0 for none.
func (s *Server) selectProtocol(offered []string) uint8 {
	for i, want := range s.cfg.Subprotocols {
		if slices.Contains(offered, want) {
			return uint8(i + 1)
		}
	}
	return 0
}

// Protocol is the negotiated subprotocol, or "".
func (c *Conn) Protocol() string {
	if c.neg.proto == 0 {
		return ""
	}
	return c.srv.cfg.Subprotocols[c.neg.proto-1]
}

// protocolName is the subprotocol selectProtocol's i names, or "".
func (s *Server) protocolName(i uint8) string {
	if i == 0 {
		return ""
	}
	return s.cfg.Subprotocols[i-1]
}

// rejection is the HTTP status and text for an error from onConnect: a
// RejectError's own, or 403.
func rejection(err error) (status int, reason string) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Status, re.Reason
	}
	return http.StatusForbidden, "forbidden"
}

// rejectionFor maps an OnConnect error to the HTTP status gobwas/ws writes.
func rejectionFor(err error) error {
	status, reason := rejection(err)
	var re *RejectError
	if errors.As(err, &re) && re.Header != nil {
		return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason), ws.RejectionHeader(ws.HandshakeHeaderHTTP(re.Header)))
	}
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

// failHandshake answers a bad upgrade request with resp (best effort, one
// non-blocking write) and closes the socket.
func (c *Conn) failHandshake(err error, resp []byte) {
	c.srv.log.Debug("handshake failed", "conn", c.id, "remote", c.slot.addr().String(), "err", err)
	c.endHandshake(resp, ReasonHandshakeFailed)
}

// refuseClient answers a client that admission refused, once a trusted
// proxy named it, and closes the socket.
func (c *Conn) refuseClient(status int) {
	reason := ReasonRateLimited
	if status == http.StatusServiceUnavailable {
		reason = ReasonOverCapacity
	}
	c.endHandshake(c.srv.refusalAnswer(status), reason)
}

// endHandshake sends resp, if any, and closes c for reason.
func (c *Conn) endHandshake(resp []byte, reason CloseReason) {
	c.hs.releaseRequest()
	if len(resp) > 0 {
		c.sendNow(resp)
	}
	c.destroy(reason)
}

// sendNow makes one best-effort non-blocking write of a handshake answer.
func (c *Conn) sendNow(b []byte) {
	w := writers.Get().(*writer)
	w.one[0] = b
	_, _ = c.sock.send(w.iov, w.one[:])
	w.one[0] = nil
	writers.Put(w)
}

// Handler returns an http.Handler that upgrades requests with
// ws.HTTPUpgrader (for an existing net/http mux) and hands the hijacked
// connection to the same poller and pools as Serve. Behind an HTTPS server
// the hijacked connection is a *tls.Conn whose socket Go's TLS stack keeps:
// it is bridged to the poller through a socket pair by two goroutines (see
// hijackedSocket); Serve with Config.TLS avoids that cost.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c, req := s.admitHTTP(w, r)
	if c == nil {
		return
	}
	proto := s.selectProtocol(req.Protocols)
	name := s.protocolName(proto)
	var ext httphead.Option // answered once, to the first offer
	if c.neg.zbits != 0 {
		ext, _ = deflateOffers(r.Header)
	}
	u := ws.HTTPUpgrader{
		Protocol: func(p string) bool { return p == name },
		Negotiate: func(httphead.Option) (httphead.Option, error) {
			resp := ext
			ext = httphead.Option{}
			return resp, nil
		},
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close() // HTTPUpgrader hijacks before it validates
		}
		c.destroy(ReasonHandshakeFailed)
		return
	}
	var early []byte
	if rw != nil && rw.Reader.Buffered() > 0 {
		early, _ = rw.Reader.Peek(rw.Reader.Buffered())
		early = bytes.Clone(early)
	}
	fd, err := s.hijackedSocket(nc)
	if err != nil {
		s.log.Error("hijacked connection has no socket", "err", err)
		c.destroy(ReasonIOError)
		return
	}
	s.stats.upgraded.Add(1)
	if c.neg.zbits != 0 {
		s.stats.compressedConns.Add(1)
	}
	s.log.Debug("upgraded", "conn", c.id, "remote", c.slot.addr().String(), "uri", r.RequestURI)
	s.attachHijacked(c, fd, proto, early)
}

// admitHTTP runs a Handler request through admission, then the checks
// Serve's connections get and onConnect, and answers a refusal itself. It
// returns the connection to upgrade, or nil.
func (s *Server) admitHTTP(w http.ResponseWriter, r *http.Request) (*Conn, *Request) {
	if err := s.start(); err != nil || s.shutting.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return nil, nil
	}
	sl := slotFor(s.clientOf(r)) // a trusted proxy's client already
	if status := s.admit(&sl, true, r.TLS != nil); status != 0 {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter()))
		}
		http.Error(w, refusalText(status), status)
		return nil, nil
	}
	c := s.newConn(-1, sl)
	c.startHandshake(false)
	if err := checkKeyAndHost(r.Header.Values("Sec-WebSocket-Key"), 1); err != nil { // net/http refuses a second Host
		http.Error(w, err.Error(), http.StatusBadRequest)
		c.destroy(ReasonHandshakeFailed)
		return nil, nil
	}
	if s.cfg.Compression == CompressionOn { // before OnConnect, which may join hubs
		_, c.neg.zbits = deflateOffers(r.Header)
	}
	req := &Request{URI: r.RequestURI, Host: r.Host, Header: r.Header, RemoteAddr: sl.addr()}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		req.Protocols = appendProtocols(req.Protocols, v)
	}
	if err := s.onConnect(c, req); err != nil {
		status, text := rejection(err)
		if re := (*RejectError)(nil); errors.As(err, &re) {
			maps.Copy(w.Header(), re.Header)
		}
		http.Error(w, text, status)
		c.destroy(ReasonHandshakeFailed)
		return nil, nil
	}
	return c, req
}

// attachHijacked hands an upgraded Handler connection's socket to the
// poller. Bytes that came with the request (early) will not be reported
// by the poller: they are parsed before the fd is armed, while this
// goroutine alone owns the parser.
func (s *Server) attachHijacked(c *Conn, fd int, proto uint8, early []byte) {
	c.sock.fd = int32(fd)
	c.neg.proto = proto
	c.mu.Lock()
	c.life.open()
	c.mu.Unlock()
	if err := s.track(c); err != nil {
		s.log.Error("register", "err", err)
		c.destroy(ReasonIOError)
		return
	}
	c.mu.Lock()
	c.hs = nil // after track ran what waited for the socket
	c.mu.Unlock()
	readOn := len(early) == 0 || c.consume(early)
	c.releaseNow() // flush the 101's followers: what OnConnect and early frames queued
	if !readOn {
		return
	}
	if err := s.arm(c); err != nil {
		s.log.Error("register", "err", err)
		c.destroy(ReasonIOError)
	}
}
