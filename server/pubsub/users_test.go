package pubsub

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

var userSecret = []byte("pubsub-users-secret")

// signed is an HS256 token with claims and an exp ttl from now.
func signed(t *testing.T, secret []byte, claims jwt.MapClaims, ttl time.Duration) string {
	t.Helper()
	claims["exp"] = time.Now().Add(ttl).Unix()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialAs opens a channel-protocol connection with token (none if empty).
func dialAs(t *testing.T, addr, token string) *websocket.Conn {
	t.Helper()
	if token == "" {
		return dialGorilla(t, "ws://"+addr+"/ws")
	}
	return dialGorilla(t, "ws://"+addr+"/ws?token="+token)
}

// A channel token stands in for the connection's permissions on one
// channel: it opens private channels and channels the connection's claims
// or the anonymous list refuse, but only with the right channel, the
// connection's own sub, a valid signature and a future exp. Private
// channels refuse a subscribe without one, and show their presence to
// subscribers only; public ones are unaffected.
func TestChannelToken_Subscribe(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: userSecret}},
		Config{AnonymousSubscribe: []string{}, PrivateChannels: []string{"private:*"}, PresenceChannels: []string{"private:*"}, PresenceQuietChannels: []string{"*"}})
	bob := dialAs(t, s.addr, signed(t, userSecret, jwt.MapClaims{"sub": "bob", "subscribe": []any{"public:*", "private:*"}}, time.Hour))
	anon := dialAs(t, s.addr, "")
	tok := func(claims jwt.MapClaims) string { return signed(t, userSecret, claims, time.Hour) }
	for _, tc := range []struct {
		name    string
		c       *websocket.Conn
		channel string
		token   string
		reason  string // "" for subscribed
	}{
		{"valid", bob, "private:1", tok(jwt.MapClaims{"sub": "bob", "channel": "private:1"}), ""},
		{"private without a token", bob, "private:2", "", "private channel"},
		{"expired", bob, "private:3", signed(t, userSecret, jwt.MapClaims{"sub": "bob", "channel": "private:3"}, -time.Minute), "token is expired"},
		{"wrong channel", bob, "private:4", tok(jwt.MapClaims{"sub": "bob", "channel": "private:1"}), `channel "private:1" is not "private:4"`},
		{"wrong sub", bob, "private:5", tok(jwt.MapClaims{"sub": "alice", "channel": "private:5"}), `sub "alice" is not the connection's user "bob"`},
		{"no sub for a user", bob, "private:6", tok(jwt.MapClaims{"channel": "private:6"}), `sub "" is not the connection's user "bob"`},
		{"bad signature", bob, "private:7", signed(t, []byte("another-secret"), jwt.MapClaims{"sub": "bob", "channel": "private:7"}, time.Hour), "signature is invalid"},
		{"beyond the claims", bob, "other", tok(jwt.MapClaims{"sub": "bob", "channel": "other"}), ""},
		{"claims refuse without one", bob, "other2", "", "not allowed"},
		{"public unaffected", bob, "public:1", "", ""},
		{"anonymous, token without sub", anon, "private:1", tok(jwt.MapClaims{"channel": "private:1"}), ""},
		{"anonymous, token with a sub", anon, "private:8", tok(jwt.MapClaims{"sub": "bob", "channel": "private:8"}), `sub "bob" is not the connection's user ""`},
		{"anonymous, public refused as before", anon, "public:2", "", "not allowed"},
	} {
		msg := `{"op":"subscribe","channel":"` + tc.channel + `","id":1`
		if tc.token != "" {
			msg += `,"token":"` + tc.token + `"`
		}
		sendJSON(t, tc.c, msg+"}")
		e := readEvent(t, tc.c)
		switch {
		case tc.reason == "" && e.Type != "subscribed":
			t.Errorf("%s: %+v, want subscribed", tc.name, e)
		case tc.reason != "" && (e.Type != "error" || !strings.Contains(e.Reason, tc.reason)):
			t.Errorf("%s: %+v, want an error with %q", tc.name, e, tc.reason)
		}
	}
	// The subscriptions are real: both get the private channel's message.
	if p, err := s.Publish("private:1", []byte(`"secret"`)); err != nil || p.Delivered != 2 {
		t.Fatalf("publish: %+v %v, want 2 deliveries", p, err)
	}
	for _, c := range []*websocket.Conn{bob, anon} {
		if e := readEvent(t, c); e.Type != "message" || e.Channel != "private:1" {
			t.Fatalf("got %+v, want the private message", e)
		}
	}
	// A private channel's members are shown to its subscribers only.
	sendJSON(t, bob, `{"op":"presence_stats","channel":"private:1"}`)
	if e := readEvent(t, bob); e.Type != "presence_stats" || e.Clients == nil || *e.Clients != 2 {
		t.Fatalf("a subscriber's presence_stats: %+v", e)
	}
	sendJSON(t, bob, `{"op":"presence_stats","channel":"private:2"}`)
	if e := readEvent(t, bob); e.Type != "error" || !strings.Contains(e.Reason, "private channel") {
		t.Fatalf("a non-subscriber's presence_stats: %+v", e)
	}
	// "token" is only for subscribe and refresh.
	sendJSON(t, bob, `{"op":"publish","channel":"public:1","data":1,"token":"x"}`)
	if e := readEvent(t, bob); e.Type != "error" || !strings.Contains(e.Reason, `"token" belongs to refresh and subscribe`) {
		t.Fatalf("publish with a token: %+v", e)
	}
}

// The backend's subscribe hook may open a private channel without a
// channel token; when it refuses, so does the node, and a channel token
// skips it altogether.
func TestChannelToken_PrivateThroughHook(t *testing.T) {
	t.Parallel()
	hooked := make(chan string, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req backendRequest
		body, _ := io.ReadAll(r.Body)
		_ = decodeStrict(body, &req)
		hooked <- req.Channel
		if req.Channel == "private:yes" {
			fmt.Fprint(w, `{"result":{}}`)
			return
		}
		fmt.Fprint(w, `{"error":{"code":403,"message":"not yours"}}`)
	}))
	t.Cleanup(backend.Close)
	s := runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: userSecret}},
		Config{PrivateChannels: []string{"private:*"}, Proxy: Proxy{SubscribeURL: backend.URL}})
	c := dialAs(t, s.addr, signed(t, userSecret, jwt.MapClaims{"sub": "bob"}, time.Hour))
	sendJSON(t, c, `{"op":"subscribe","channel":"private:yes","id":1}`)
	if e := readEvent(t, c); e.Type != "subscribed" || <-hooked != "private:yes" {
		t.Fatalf("hook's consent: %+v", e)
	}
	sendJSON(t, c, `{"op":"subscribe","channel":"private:no","id":2}`)
	if e := readEvent(t, c); e.Type != "error" || e.Reason != "not yours" {
		t.Fatalf("hook's refusal: %+v", e)
	}
	<-hooked
	sendJSON(t, c, `{"op":"subscribe","channel":"private:no","id":3,"token":"`+signed(t, userSecret, jwt.MapClaims{"sub": "bob", "channel": "private:no"}, time.Hour)+`"}`)
	if e := readEvent(t, c); e.Type != "subscribed" {
		t.Fatalf("with a channel token: %+v", e)
	}
	select {
	case ch := <-hooked:
		t.Fatalf("the hook was asked about %s despite the channel token", ch)
	default:
	}
}

// MaxConnsPerUser refuses exactly the connection past it, with 429 at the
// upgrade, counts it, leaves other users and anonymous clients alone, and
// gives the place back when a connection closes.
func TestUsers_MaxConnsPerUser(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: userSecret}}, Config{MaxConnsPerUser: 2})
	bob := signed(t, userSecret, jwt.MapClaims{"sub": "bob"}, time.Hour)
	dial := func(token string) (*websocket.Conn, int) {
		url := "ws://" + s.addr + "/ws"
		if token != "" {
			url += "?token=" + token
		}
		c, resp, _ := websocket.DefaultDialer.Dial(url, nil)
		if resp == nil {
			t.Fatalf("dial %s: no answer", url)
		}
		resp.Body.Close()
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, resp.StatusCode
	}
	first, st1 := dial(bob)
	_, st2 := dial(bob)
	_, st3 := dial(bob)
	if st1 != 101 || st2 != 101 || st3 != http.StatusTooManyRequests {
		t.Fatalf("bob's three upgrades: %d %d %d, want 101 101 429", st1, st2, st3)
	}
	if got := s.Stats().UserConnsRefused; got != 1 {
		t.Fatalf("UserConnsRefused %d, want 1", got)
	}
	for _, token := range []string{signed(t, userSecret, jwt.MapClaims{"sub": "alice"}, time.Hour), "", "", ""} {
		if _, st := dial(token); st != 101 {
			t.Fatalf("another client refused: %d", st)
		}
	}
	first.Close()
	eventually(t, 5*time.Second, func() error {
		c, st := dial(bob)
		if st != 101 {
			return fmt.Errorf("bob's connection after one closed: %d", st)
		}
		c.Close()
		return nil
	})
}

// The user operations reach every node: two nodes on one MemoryBroker,
// the API on one of them. /api/unsubscribe removes bob's subscriptions on
// both (each told so) and a later message reaches alice, not bob;
// /api/disconnect closes bob's connections on both with the code and
// reason given, and alice's stay open. Bad codes, reasons and bodies get
// 400 and change nothing.
func TestUsers_OperationsAcrossNodes(t *testing.T) {
	t.Parallel()
	b := NewMemoryBroker(BrokerOptions{})
	sc := server.Config{Auth: &server.Auth{HMACSecret: userSecret}}
	var api http.Handler
	sc.HTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })
	n1 := newNode(t, sc, Config{Broker: b})
	api = n1.APIHandler("k3y")
	n1.serve(t)
	n2 := runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: userSecret}}, Config{Broker: b})
	var bobs, alices []*websocket.Conn
	for _, n := range []*testNode{n1, n2} {
		for user, conns := range map[string]*[]*websocket.Conn{"bob": &bobs, "alice": &alices} {
			c := dialGorilla(t, "ws://"+n.addr+"/ws?channel=news&channel=other&token="+signed(t, userSecret, jwt.MapClaims{"sub": user}, time.Hour))
			readEvent(t, c)
			readEvent(t, c)
			*conns = append(*conns, c)
		}
	}
	base := "http://" + n1.addr + "/api/"
	for _, tc := range []struct{ path, body, want string }{
		{"disconnect", `{"user":"bob","code":1005}`, "cannot be sent"},
		{"disconnect", `{"user":"bob","code":1010}`, "cannot be sent"},
		{"disconnect", `{"user":"bob","code":999}`, "cannot be sent"},
		{"disconnect", `{"user":"bob","code":5000}`, "cannot be sent"},
		{"disconnect", `{"user":"bob","reason":"` + strings.Repeat("x", 124) + `"}`, "at most 123"},
		{"disconnect", `{"code":4000}`, "no user"},
		{"disconnect", `{"user":"bob","channel":"news"}`, `"channel" belongs to /api/unsubscribe`},
		{"unsubscribe", `{"user":"bob","channel":"news","code":4000}`, `"code" and "reason" belong to /api/disconnect`},
		{"unsubscribe", `{"user":"bob","channel":"$bad"}`, "bad channel name"},
		{"unsubscribe", `{"user":"bob","channel":"news","extra":1}`, "unknown field"},
	} {
		if status, out := post(t, base+tc.path, "k3y", "", tc.body); status != 400 || !strings.Contains(fmt.Sprint(out["error"]), tc.want) {
			t.Errorf("%s %s: %d %v, want 400 with %q", tc.path, tc.body, status, out, tc.want)
		}
	}

	if status, out := post(t, base+"unsubscribe", "k3y", "application/json", `{"user":"bob","channel":"news"}`); status != 200 || out["channel"] != "news" {
		t.Fatalf("unsubscribe: %d %v", status, out)
	}
	for _, c := range bobs {
		if e := readEvent(t, c); e.Type != "unsubscribed" || e.Channel != "news" {
			t.Fatalf("bob got %+v, want unsubscribed from news", e)
		}
	}
	if _, err := n2.Publish("news", []byte(`"after"`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range alices {
		if e := readEvent(t, c); e.Channel != "news" || string(e.Data) != `"after"` {
			t.Fatalf("alice got %+v, want the news", e)
		}
	}
	// Each node has delivered the news: a copy for bob would be ahead of
	// a message published now.
	if _, err := n2.Publish("other", []byte(`"marker"`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(bobs, alices...) {
		if e := readEvent(t, c); e.Channel != "other" || string(e.Data) != `"marker"` {
			t.Fatalf("got %+v, want only the other channel's marker", e)
		}
	}

	if status, out := post(t, base+"disconnect", "k3y", "", `{"user":"bob","code":4501,"reason":"banned"}`); status != 200 || out["user"] != "bob" {
		t.Fatalf("disconnect: %d %v", status, out)
	}
	for i, c := range bobs {
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4501 || ce.Text != "banned" {
			t.Fatalf("bob's connection %d: %v, want close 4501 banned", i, err)
		}
	}
	if _, err := n1.Publish("other", []byte(`"still here"`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range alices {
		if e := readEvent(t, c); string(e.Data) != `"still here"` {
			t.Fatalf("alice got %+v", e)
		}
	}
}
