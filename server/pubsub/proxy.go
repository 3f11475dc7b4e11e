package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// Backend hooks over HTTP (Centrifugo's proxy): an application's backend
// (Express, Django, Rails) authorizes what clients do. For each hook the
// node POSTs JSON describing the client and the request:
//
//	{"client":"3f9a0c1d2e4b-42","user":"alice","remote":"10.0.0.7:51234",
//	 "headers":{"Cookie":"sid=..."},"channel":"room:1","data":{...},"method":"..."}
//
// and the backend answers allow, {"result":{...}}, or deny,
// {"error":{"code":403,"message":"..."}} (an error reply to the client) or
// {"disconnect":{"code":4403,"reason":"..."}} (the connection is closed).
// A hook never runs on a read worker: the request goes to a goroutine of
// its own, at most Proxy.MaxInflight at once per node (beyond them the
// client is refused at once with ErrBackendBusy), each bounded by
// Proxy.Timeout, and the reply reaches the client later, carrying its id.

// Defaults for Proxy.
const (
	DefaultProxyTimeout     = 2 * time.Second
	DefaultProxyMaxInflight = 256
)

// maxBackendReplyBytes bounds what is read of a backend's answer.
const maxBackendReplyBytes = 1 << 20

// Proxy sends what clients do to an application's backend over HTTP. An
// empty URL leaves that hook off.
type Proxy struct {
	// ConnectURL decides each upgrade request (Node.AdmitConnect as the
	// server's Config.Admit): a result may name the user ("sub"), its
	// info, an expiry and channels to subscribe; a refusal answers the
	// upgrade with the backend's HTTP status (403 for an error answer, 503
	// when the backend is down or busy).
	ConnectURL string
	// SubscribeURL authorizes each subscribe a client asks for (control
	// message or channel= at connect).
	SubscribeURL string
	// PublishURL authorizes each publish control message; a result with
	// "data" publishes that instead.
	PublishURL string
	// RPCURL answers {"op":"rpc","method":...,"data":...}: the result's
	// "data" goes back to the client as {"type":"rpc","id":...,"data":...}.
	RPCURL string
	// RefreshURL extends a session about to expire (server.Config.OnExpiring,
	// through Node.Expiring): the result's "expire_at" (Unix seconds) is the
	// new expiry. Without it the client is sent {"type":"expiring"} and
	// refreshes its token itself.
	RefreshURL string
	// Headers names the upgrade request's headers sent with every hook
	// (Cookie, Authorization): the node keeps them per connection.
	Headers []string
	// Timeout bounds each request. Zero means DefaultProxyTimeout (2 s).
	Timeout time.Duration
	// MaxInflight bounds the requests in flight on this node; beyond it a
	// hook is refused at once with ErrBackendBusy. Zero means
	// DefaultProxyMaxInflight (256).
	MaxInflight int
	// Client sends the requests. Nil means one with keep-alive connections
	// (up to MaxInflight idle ones to the backend).
	Client *http.Client
}

// on reports whether any hook is set.
func (p Proxy) on() bool {
	return p.ConnectURL != "" || p.SubscribeURL != "" || p.PublishURL != "" || p.RPCURL != "" || p.RefreshURL != ""
}

func (p Proxy) validate() []error {
	var errs []error
	if p.Timeout < 0 {
		errs = append(errs, fmt.Errorf("pubsub: Proxy.Timeout (%v) must not be negative", p.Timeout))
	}
	if p.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("pubsub: Proxy.MaxInflight (%d) must not be negative", p.MaxInflight))
	}
	for _, u := range []string{p.ConnectURL, p.SubscribeURL, p.PublishURL, p.RPCURL, p.RefreshURL} {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("pubsub: proxy URL %q: want http:// or https://", u))
		}
	}
	return errs
}

// backendRequest is what a hook POSTs.
type backendRequest struct {
	Client  string            `json:"client"`
	User    string            `json:"user"`
	Remote  string            `json:"remote"`
	Headers map[string]string `json:"headers,omitempty"`
	URI     string            `json:"uri,omitempty"` // connect: the upgrade request's path and query
	Channel string            `json:"channel,omitempty"`
	Method  string            `json:"method,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
}

// backendReply is what a backend answers: one of its fields.
type backendReply struct {
	Result     *backendResult   `json:"result"`
	Error      *BackendError    `json:"error"`
	Disconnect *disconnectError `json:"disconnect"`
}

// backendResult is an allowing answer.
type backendResult struct {
	User     string          `json:"user"`      // connect: the connection's subject
	Info     json.RawMessage `json:"info"`      // connect: an object, the "info" claim (presence)
	Channels []string        `json:"channels"`  // connect: subscribed server-side
	ExpireAt int64           `json:"expire_at"` // connect, refresh: Unix seconds
	Data     json.RawMessage `json:"data"`      // publish: data to publish instead; rpc: the answer
}

// BackendError is a backend's refusal, {"error":{"code":...,"message":...}}
// or a non-2xx HTTP status: the client gets {"type":"error","code":...,
// "reason":message}, or at connect the status (403 for an error answer).
type BackendError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"-"` // the HTTP status, when not 2xx
}

func (e *BackendError) Error() string { return e.Message }

// disconnectError is a backend's {"disconnect":{"code":4403,"reason":...}}:
// the connection is closed with that code (refused with 403 at connect).
type disconnectError struct {
	Code   frame.CloseCode `json:"code"`
	Reason string          `json:"reason"`
}

func (e *disconnectError) Error() string { return "pubsub: disconnected by the backend: " + e.Reason }

// backend is the node's end of the hooks: one http.Client, a semaphore
// of MaxInflight, and the forwarded headers of each connection.
type backend struct {
	cfg    Proxy
	client *http.Client
	slots  chan struct{}

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	headers map[*server.Conn]map[string]string
}

func newBackend(p Proxy) *backend {
	setDefault(&p.Timeout, DefaultProxyTimeout)
	setDefault(&p.MaxInflight, DefaultProxyMaxInflight)
	if p.Client == nil {
		p.Client = newHTTPClient(p.MaxInflight)
	}
	p.Headers = slices.Clone(p.Headers)
	for i, h := range p.Headers {
		p.Headers[i] = http.CanonicalHeaderKey(strings.TrimSpace(h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &backend{cfg: p, client: p.Client, slots: make(chan struct{}, p.MaxInflight), ctx: ctx, cancel: cancel, headers: make(map[*server.Conn]map[string]string)}
}

// close cancels the requests in flight and waits for their goroutines.
func (b *backend) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// HandleConnect counts c among its user's connections (users.go),
// refusing it with 429 past Config.MaxConnsPerUser, and keeps the headers
// of c's upgrade request that Proxy.Headers names, for the hooks of c's
// life; HandleClose forgets both. Call it from the server's OnConnect,
// first, and HandleClose from OnClose (and when OnConnect refuses c: a
// refused connection gets no OnClose).
func (n *Node) HandleConnect(c *server.Conn, r *server.Request) error {
	if err := n.admitUser(c); err != nil {
		return err
	}
	n.keepHeaders(c, r)
	return nil
}

// keepHeaders keeps the headers of r that Proxy.Headers names for c.
func (n *Node) keepHeaders(c *server.Conn, r *server.Request) {
	b := n.backend
	if b == nil || len(b.cfg.Headers) == 0 {
		return
	}
	h := make(map[string]string, len(b.cfg.Headers))
	for _, k := range b.cfg.Headers {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = strings.Join(v, ", ")
		}
	}
	b.mu.Lock()
	b.headers[c] = h
	b.mu.Unlock()
}

// forgetHeaders forgets what HandleConnect kept of c.
func (n *Node) forgetHeaders(c *server.Conn) {
	if b := n.backend; b != nil && len(b.cfg.Headers) > 0 {
		b.mu.Lock()
		delete(b.headers, c)
		b.mu.Unlock()
	}
}

// hook POSTs what c asks (req's channel, method, data) to url on a
// goroutine of its own and calls done there with the result or the
// refusal. It returns ErrBackendBusy, and never calls done, when
// MaxInflight requests are in flight.
func (n *Node) hook(url string, c *server.Conn, req backendRequest, done func(*backendResult, error)) error {
	b := n.backend
	select {
	case b.slots <- struct{}{}:
	default:
		n.stats.backendBusy.Add(1)
		return ErrBackendBusy
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.slots
		return ErrBackendUnavailable
	}
	req.Client, req.User, req.Remote = n.clientID(c), c.Subject(), c.RemoteAddr().String()
	req.Headers = b.headers[c]
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		res, err := n.post(url, req)
		<-b.slots
		done(res, err)
	}()
	return nil
}

// post sends one hook request and reads the answer.
func (n *Node) post(url string, req backendRequest) (*backendResult, error) {
	b := n.backend
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, raw, err := postJSON(b.ctx, b.client, url, body, b.cfg.Timeout, nil)
	if err != nil {
		return nil, n.backendFailed(url, err)
	}
	var r backendReply
	jsonErr := json.Unmarshal(raw, &r)
	if resp.StatusCode/100 != 2 {
		be := &BackendError{Code: resp.StatusCode, Status: resp.StatusCode, Message: "backend answered " + resp.Status}
		if jsonErr == nil && r.Error != nil && r.Error.Message != "" {
			be.Message = r.Error.Message
		}
		if resp.StatusCode >= 500 {
			_ = n.backendFailed(url, be) // counted and logged; the status still answers
		}
		return nil, be
	}
	if jsonErr != nil {
		return nil, n.backendFailed(url, fmt.Errorf("answer is not JSON: %w", jsonErr))
	}
	switch {
	case r.Disconnect != nil:
		return nil, r.Disconnect
	case r.Error != nil:
		return nil, r.Error
	case r.Result == nil:
		return nil, n.backendFailed(url, errors.New(`answer has neither "result", "error" nor "disconnect"`))
	}
	return r.Result, nil
}

// newHTTPClient is the client of the backend hooks and the webhooks:
// keep-alive connections, up to idle of them kept to the backend.
func newHTTPClient(idle int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idle
	return &http.Client{Transport: t}
}

// postJSON POSTs body to url with header, within timeout (and ctx), and
// returns the answer (its body closed) and up to maxBackendReplyBytes of
// its body: a longer one is an error.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte, timeout time.Duration, header http.Header) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(hr.Header, header)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBackendReplyBytes+1))
	switch {
	case err != nil:
		return nil, nil, err
	case len(raw) > maxBackendReplyBytes:
		return nil, nil, errors.New("answer larger than 1 MiB")
	}
	return resp, raw, nil
}

// backendFailed logs (sampled) and counts a backend that did not answer
// as it should, and returns the error the client sees.
func (n *Node) backendFailed(url string, err error) error {
	n.stats.backendErrors.Add(1)
	n.warnSampled("backend hook failed", "url", url, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within %v", ErrBackendUnavailable, n.backend.cfg.Timeout)
	}
	return fmt.Errorf("%w: %w", ErrBackendUnavailable, err)
}

// Expiring is the server's Config.OnExpiring: with Proxy.RefreshURL the
// backend extends c's session (a refusal leaves it to expire); otherwise
// c is sent {"type":"expiring","in":seconds} to refresh its token itself
// ({"op":"refresh","token":...}).
func (n *Node) Expiring(c *server.Conn, left time.Duration) {
	secs := int64(left.Round(time.Second) / time.Second)
	notify := func() { _ = c.SendPrepared(replyFrame(reply{Type: "expiring", In: &secs})) }
	if n.backend == nil || n.backend.cfg.RefreshURL == "" {
		notify()
		return
	}
	err := n.hook(n.backend.cfg.RefreshURL, c, backendRequest{}, func(res *backendResult, err error) {
		if err == nil && res.ExpireAt <= time.Now().Unix() {
			err = errors.New(`backend's refresh answer has no future "expire_at"`)
		}
		var de *disconnectError
		switch {
		case errors.As(err, &de):
			_ = c.Close(de.Code, de.Reason)
			return
		case err != nil:
			notify()
			return
		}
		c.SetExpiry(time.Unix(res.ExpireAt, 0))
		_ = c.SendPrepared(replyFrame(reply{Type: "refreshed", Expires: &res.ExpireAt}))
	})
	if err != nil {
		notify()
	}
}

// refresh replaces c's claims with a fresh token's, which must name the
// same subject, and answers {"type":"refreshed","expires":...}.
func (n *Node) refresh(c *server.Conn, token string, id json.RawMessage) error {
	claims, err := n.srv.Config().Auth.Verify(token)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if sub, _ := claims["sub"].(string); sub != c.Subject() {
		return fmt.Errorf("%w: the token's sub %q is not the connection's", ErrBadToken, sub)
	}
	c.SetClaims(claims)
	var exp int64
	if t := c.Expiry(); !t.IsZero() {
		exp = t.Unix()
	}
	return c.SendPrepared(replyFrame(reply{Type: "refreshed", Expires: &exp, ID: id}))
}

// rpc asks the backend to answer method; the answer is
// {"type":"rpc","id":...,"data":...}.
func (n *Node) rpc(c *server.Conn, method string, data json.RawMessage, id json.RawMessage) error {
	if n.backend == nil || n.backend.cfg.RPCURL == "" {
		return ErrNoRPC
	}
	return n.hook(n.backend.cfg.RPCURL, c, backendRequest{Method: method, Data: data}, func(res *backendResult, err error) {
		if err != nil {
			n.hookRefused(c, "rpc", "", id, err)
			return
		}
		d := res.Data
		if len(d) == 0 {
			d = json.RawMessage("null")
		}
		_ = c.SendPrepared(replyFrame(reply{Type: "rpc", ID: id, Data: d}))
	})
}

// hookRefused answers a control message that a hook refused, or whose
// work after the hook failed; a client the backend disconnects is closed.
func (n *Node) hookRefused(c *server.Conn, op, channel string, id json.RawMessage, err error) {
	var de *disconnectError
	if errors.As(err, &de) {
		_ = c.Close(de.Code, de.Reason)
		return
	}
	n.stats.controlErrors.Add(1)
	r := reply{Type: "error", Op: op, Channel: channel, ID: id, Reason: reasonOf(err)}
	var be *BackendError
	if errors.As(err, &be) {
		r.Code = be.Code
	}
	_ = c.SendPrepared(replyFrame(r))
}

// AdmitConnect is the server's Config.Admit when Proxy.ConnectURL is set:
// the backend decides each upgrade request (its headers named in
// Proxy.Headers, its URI), off the read workers, at most
// Proxy.MaxInflight at once. Its result's user, info and expire_at
// become c's claims ("sub", "info", "exp": Subject, presence, expiry) and
// its channels are subscribed server-side before OnConnect runs.
func (n *Node) AdmitConnect(c *server.Conn, r *server.Request, done func(error)) {
	n.keepHeaders(c, r)
	err := n.hook(n.backend.cfg.ConnectURL, c, backendRequest{URI: r.URI}, func(res *backendResult, err error) {
		if err != nil {
			n.forgetHeaders(c)
			done(connectRefusal(err))
			return
		}
		n.connectResult(c, res)
		done(nil)
	})
	if err != nil {
		n.forgetHeaders(c)
		done(connectRefusal(err))
	}
}

// connectResult applies an allowing connect answer to c.
func (n *Node) connectResult(c *server.Conn, res *backendResult) {
	var info map[string]any
	if len(res.Info) > 0 && json.Unmarshal(res.Info, &info) != nil {
		info = nil // not an object: left out, as presence leaves out such a claim
	}
	if res.User != "" || info != nil || res.ExpireAt > 0 {
		claims := maps.Clone(c.Claims())
		if claims == nil {
			claims = map[string]any{}
		}
		if res.User != "" {
			claims["sub"] = res.User
		}
		if info != nil {
			claims["info"] = info
		}
		if res.ExpireAt > 0 {
			claims["exp"] = float64(res.ExpireAt) // as JSON decodes it
		}
		c.SetClaims(claims)
	}
	for _, ch := range res.Channels {
		if err := n.Subscribe(c, ch, nil); err != nil {
			replySubscribeError(c, ch, nil, err)
		}
	}
}

// connectRefusal is the upgrade's answer to a connect hook's err: the
// backend's HTTP status, 403 for its error or disconnect answer, 503 when
// it is down or busy.
func connectRefusal(err error) error {
	var be *BackendError
	var de *disconnectError
	switch {
	case errors.As(err, &be) && be.Status != 0:
		return server.Reject(be.Status, be.Message)
	case errors.As(err, &be):
		return server.Reject(http.StatusForbidden, be.Message)
	case errors.As(err, &de):
		return server.Reject(http.StatusForbidden, de.Reason)
	}
	return &server.RejectError{Status: http.StatusServiceUnavailable, Reason: reasonOf(err), Header: http.Header{"Retry-After": {retryAfter(nil)}}}
}
