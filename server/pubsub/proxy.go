package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	return p.SubscribeURL != "" || p.PublishURL != "" || p.RPCURL != "" || p.RefreshURL != ""
}

func (p Proxy) validate() []error {
	var errs []error
	if p.Timeout < 0 {
		errs = append(errs, fmt.Errorf("pubsub: Proxy.Timeout (%v) must not be negative", p.Timeout))
	}
	if p.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("pubsub: Proxy.MaxInflight (%d) must not be negative", p.MaxInflight))
	}
	for _, u := range []string{p.SubscribeURL, p.PublishURL, p.RPCURL, p.RefreshURL} {
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
	Channel string            `json:"channel,omitempty"`
	Method  string            `json:"method,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
}

// backendReply is what a backend answers: one of its fields.
type backendReply struct {
	Result     *backendResult `json:"result"`
	Error      *BackendError  `json:"error"`
	Disconnect *struct {
		Code   frame.CloseCode `json:"code"`
		Reason string          `json:"reason"`
	} `json:"disconnect"`
}

// backendResult is an allowing answer.
type backendResult struct {
	ExpireAt int64           `json:"expire_at"` // Unix seconds; refresh
	Data     json.RawMessage `json:"data"`      // publish: data to publish instead; rpc: the answer
}

// BackendError is a backend's refusal, {"error":{"code":...,"message":...}}:
// the client gets {"type":"error","code":...,"reason":message}.
type BackendError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *BackendError) Error() string { return e.Message }

// errDisconnected is the error of a hook whose backend closed the client.
var errDisconnected = errors.New("pubsub: disconnected by the backend")

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
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = p.MaxInflight
		p.Client = &http.Client{Transport: t}
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

// HandleConnect keeps the headers of c's upgrade request that
// Proxy.Headers names, for the hooks of c's life; HandleClose forgets
// them. Call it from the server's OnConnect, first, when hooks forward
// headers, and HandleClose from OnClose (and when OnConnect refuses c: a
// refused connection gets no OnClose).
func (n *Node) HandleConnect(c *server.Conn, r *server.Request) {
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
		res, err := n.post(url, c, req)
		<-b.slots
		done(res, err)
	}()
	return nil
}

// post sends one hook request and reads the answer; a disconnect answer
// closes c.
func (n *Node) post(url string, c *server.Conn, req backendRequest) (*backendResult, error) {
	b := n.backend
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(hr)
	if err != nil {
		return nil, n.backendFailed(url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBackendReplyBytes+1))
	switch {
	case err != nil:
		return nil, n.backendFailed(url, err)
	case resp.StatusCode/100 != 2:
		return nil, n.backendFailed(url, fmt.Errorf("HTTP status %d", resp.StatusCode))
	case len(raw) > maxBackendReplyBytes:
		return nil, n.backendFailed(url, errors.New("answer larger than 1 MiB"))
	}
	var r backendReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, n.backendFailed(url, fmt.Errorf("answer is not JSON: %w", err))
	}
	switch {
	case r.Disconnect != nil:
		_ = c.Close(r.Disconnect.Code, r.Disconnect.Reason)
		return nil, errDisconnected
	case r.Error != nil:
		return nil, r.Error
	case r.Result == nil:
		return nil, n.backendFailed(url, errors.New(`answer has neither "result", "error" nor "disconnect"`))
	}
	return r.Result, nil
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
		if err != nil {
			if !errors.Is(err, errDisconnected) {
				notify()
			}
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
// work after the hook failed; a client the backend disconnected gets
// nothing.
func (n *Node) hookRefused(c *server.Conn, op, channel string, id json.RawMessage, err error) {
	if errors.Is(err, errDisconnected) {
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
