package pubsub

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/fanout-ws/fanout/server"
)

// APIHandler serves the HTTP API for backends at /api/publish,
// /api/channels and /api/presence (mount it at "/api/"):
//
//	POST /api/publish  {"channel":"a","data":<JSON>}          -> {"channel":"a","offset":7,"epoch":"..","delivered":12}
//	POST /api/publish  [{"channel":"a","data":..}, ...]        -> {"results":[...]}
//	GET  /api/channels                                         -> {"channels":[{"channel":"a","subscribers":12,"offset":7,"epoch":".."}]}
//	GET  /api/presence?channel=room:1                          -> {"channel":"room:1","members":[{"client":"..","user":"..","info":{..}}]}
//	GET  /api/presence_stats?channel=room:1                    -> {"channel":"room:1","clients":3,"users":2}
//	POST /api/disconnect  {"user":"u","code":4500,"reason":".."} -> {"user":"u"}  (Node.Disconnect)
//	POST /api/unsubscribe {"user":"u","channel":"a"}            -> {"user":"u","channel":"a"}  (Node.UnsubscribeUser)
//
// The user operations reach every node through the node bus and are
// answered once sent, before the connections are closed or unsubscribed;
// 503 while the broker is down (nothing was sent).
//
// Requests carry the key as "Authorization: Bearer <key>" or "X-API-Key:
// <key>". An empty key disables the API (403). A batch is checked whole
// before any of it is published. Errors are {"error":"reason"} with 400,
// 401, 403, 405, 413, 415 or 503.
func (n *Node) APIHandler(key string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/publish", n.apiPublish)
	mux.HandleFunc("/api/channels", n.apiChannels)
	mux.HandleFunc("/api/presence", n.apiPresence)
	mux.HandleFunc("/api/presence_stats", n.apiPresence)
	mux.HandleFunc("/api/disconnect", n.apiUser)
	mux.HandleFunc("/api/unsubscribe", n.apiUser)
	return n.apiAuth(key, mux)
}

// apiBodyBytes caps a publish request: a batch of messages at most
// MaxMessageBytes each, within reason.
func (n *Node) apiBodyBytes() int64 { return int64(max(1<<20, 4*n.maxMessageBytes)) }

func (n *Node) apiAuth(key string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key == "" {
			apiError(w, http.StatusForbidden, "the HTTP API is disabled: configure an API key")
			return
		}
		got := r.Header.Get("X-API-Key")
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = v
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			n.stats.apiKeyFailures.Add(1)
			n.warnSampled("api: bad or missing key", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="fanout"`)
			apiError(w, http.StatusUnauthorized, "missing or wrong API key")
			return
		}
		if n.srv.ShuttingDown() {
			apiError(w, http.StatusServiceUnavailable, "server shutting down")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiMessage is one message of a publish request.
type apiMessage struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// apiResult is one message's outcome in a batch reply: a Publication or an
// error.
type apiResult struct {
	*Publication
	Channel string `json:"channel"` // shadows Publication's, so errors name it too
	Error   string `json:"error,omitempty"`
}

// apiBody reads a POST request's JSON body, or answers the request and
// returns false.
func (n *Node) apiBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		apiError(w, http.StatusMethodNotAllowed, "use POST")
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			apiError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.apiBodyBytes()))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", tooBig.Limit))
			return nil, false
		}
		apiError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	return body, true
}

func (n *Node) apiPublish(w http.ResponseWriter, r *http.Request) {
	body, ok := n.apiBody(w, r)
	if !ok {
		return
	}
	var err error
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	batch := len(trimmed) > 0 && trimmed[0] == '['
	var msgs []apiMessage
	if batch {
		err = decodeStrict(body, &msgs)
		if err == nil && len(msgs) == 0 {
			err = errors.New("empty batch")
		}
	} else {
		msgs = make([]apiMessage, 1)
		err = decodeStrict(body, &msgs[0])
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "body: "+err.Error()+`; want {"channel":"name","data":<JSON>} or an array of them`)
		return
	}
	for i, m := range msgs {
		if err := n.checkPublish(m); err != nil {
			if batch {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("[%d]: %s", i, reasonOf(err)))
			} else {
				apiError(w, http.StatusBadRequest, reasonOf(err))
			}
			return
		}
	}
	results := make([]apiResult, len(msgs))
	status := http.StatusOK
	batchMsgs := make([]Message, len(msgs))
	for i, m := range msgs {
		batchMsgs[i] = Message{Channel: m.Channel, Data: m.Data}
	}
	pubs, errs := n.publishBatch(batchMsgs) // one broker round trip where the broker can
	for i := range msgs {
		if errs[i] != nil {
			results[i] = apiResult{Channel: msgs[i].Channel, Error: reasonOf(errs[i])}
			status = http.StatusServiceUnavailable
			continue
		}
		results[i] = apiResult{Publication: &pubs[i], Channel: pubs[i].Channel}
	}
	switch {
	case batch:
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfter(nil))
		}
		apiJSON(w, status, map[string]any{"results": results})
	case status != http.StatusOK:
		apiError(w, status, results[0].Error)
	default:
		apiJSON(w, status, results[0].Publication)
	}
}

// checkPublish finds what Publish would refuse for the message itself, so a
// batch is checked whole first; capacity can still refuse it later.
func (n *Node) checkPublish(m apiMessage) error {
	if err := CheckChannelName(m.Channel); err != nil {
		return err
	}
	if len(m.Data) == 0 {
		return errors.New(`"data" is missing`)
	}
	if envelopeBytes(m.Channel, m.Data) > n.maxMessageBytes {
		return fmt.Errorf("%w: data over %d bytes", server.ErrTooLarge, n.maxMessageBytes-envelopeBytes(m.Channel, nil))
	}
	return nil
}

// apiUser answers /api/disconnect and /api/unsubscribe.
func (n *Node) apiUser(w http.ResponseWriter, r *http.Request) {
	body, ok := n.apiBody(w, r)
	if !ok {
		return
	}
	var req userNote
	err := decodeStrict(body, &req)
	disconnect := r.URL.Path == "/api/disconnect"
	switch {
	case err != nil:
		err = fmt.Errorf(`body: %w; want {"user":"u","code":4500,"reason":".."} or {"user":"u","channel":"a"}`, err)
	case disconnect && req.Channel != "":
		err = errors.New(`"channel" belongs to /api/unsubscribe`)
	case disconnect:
		err = n.Disconnect(req.User, req.Code, req.Reason)
		req = userNote{User: req.User}
	case req.Code != 0 || req.Reason != "":
		err = errors.New(`"code" and "reason" belong to /api/disconnect`)
	default:
		err = n.UnsubscribeUser(req.User, req.Channel)
	}
	switch {
	case errors.Is(err, ErrBrokerUnavailable), errors.Is(err, errBusFull):
		apiError(w, http.StatusServiceUnavailable, reasonOf(err))
	case err != nil:
		apiError(w, http.StatusBadRequest, reasonOf(err))
	default:
		apiJSON(w, http.StatusOK, req)
	}
}

func (n *Node) apiChannels(w http.ResponseWriter, r *http.Request) {
	if apiGet(w, r) {
		apiJSON(w, http.StatusOK, map[string]any{"channels": n.Channels()})
	}
}

// apiPresence answers /api/presence and /api/presence_stats.
func (n *Node) apiPresence(w http.ResponseWriter, r *http.Request) {
	if !apiGet(w, r) {
		return
	}
	channel := r.URL.Query().Get("channel")
	var v any
	var err error
	if r.URL.Path == "/api/presence_stats" {
		v, err = n.PresenceStats(channel)
	} else {
		var members []Member
		var truncated bool
		members, truncated, err = n.Presence(channel)
		v = struct {
			Channel   string   `json:"channel"`
			Members   []Member `json:"members"`
			Truncated bool     `json:"truncated,omitempty"`
		}{channel, members, truncated}
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, reasonOf(err))
		return
	}
	apiJSON(w, http.StatusOK, v)
}

// apiGet refuses a method other than GET or HEAD, and reports whether r
// may go on.
func apiGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		apiError(w, http.StatusMethodNotAllowed, "use GET")
		return false
	}
	return true
}

func apiJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, reason string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter(nil))
	}
	apiJSON(w, status, map[string]string{"error": reason})
}
