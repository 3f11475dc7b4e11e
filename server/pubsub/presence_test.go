package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

var presenceSecret = []byte("pubsub-presence-secret")

// presenceToken is "&token=" and a token with claims, valid for an hour.
func presenceToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(presenceSecret)
	if err != nil {
		t.Fatal(err)
	}
	return "&token=" + tok
}

// readNonEvent reads c's next message that is not a join or leave.
func readNonEvent(t *testing.T, c *websocket.Conn) event {
	t.Helper()
	for {
		if e := readEvent(t, c); e.Type != "join" && e.Type != "leave" {
			return e
		}
	}
}

func apiGetJSON(t *testing.T, url, key string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %d reply is not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// The presence ops and the HTTP API answer a presence channel's members,
// with their user and info, to clients allowed to subscribe to it; other
// channels and other clients get errors; a member that closes leaves, and
// subscribers hear its join and leave.
func TestPresence_OpsAndAPI(t *testing.T) {
	t.Parallel()
	var api http.Handler
	sc := server.Config{Auth: &server.Auth{HMACSecret: presenceSecret}}
	sc.HTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })
	s := newNode(t, sc, Config{PresenceChannels: []string{"room:*"}})
	api = s.APIHandler("k3y")
	s.serve(t)
	watcher := dialGorilla(t, "ws://"+s.addr+"/ws?channel=room:1"+presenceToken(t, jwt.MapClaims{"sub": "wendy"}))
	if e := readEvent(t, watcher); e.Type != "subscribed" {
		t.Fatalf("got %+v", e)
	}
	if e := readEvent(t, watcher); e.Type != "join" || e.Member == nil || e.Member.User != "wendy" || e.Member.Info != nil {
		t.Fatalf("got %+v, want wendy's own join without info", e)
	}
	alice := dialGorilla(t, "ws://"+s.addr+"/ws?channel=room:1"+presenceToken(t, jwt.MapClaims{"sub": "alice", "info": map[string]any{"name": "Alice"}}))
	readNonEvent(t, alice)
	e := readEvent(t, watcher)
	if e.Type != "join" || e.Channel != "room:1" || e.Member.User != "alice" || string(e.Member.Info) != `{"name":"Alice"}` || !strings.HasPrefix(e.Member.Client, string(s.bus.id)+"-") {
		t.Fatalf("got %+v (member %+v), want alice's join", e, e.Member)
	}
	aliceID := e.Member.Client

	sendJSON(t, alice, `{"op":"presence","channel":"room:1","id":5}`)
	if e := readNonEvent(t, alice); e.Type != "presence" || string(e.ID) != "5" || len(e.Members) != 2 || e.Members[0].Client > e.Members[1].Client || e.Truncated {
		t.Fatalf("presence: got %+v", e)
	}
	sendJSON(t, alice, `{"op":"presence_stats","channel":"room:1","id":6}`)
	if e := readNonEvent(t, alice); e.Type != "presence_stats" || *e.Clients != 2 || *e.Users != 2 {
		t.Fatalf("presence_stats: got %+v", e)
	}
	for _, tc := range []struct{ name, claims, msg, reason string }{
		{"no presence", "", `{"op":"presence","channel":"news"}`, "channel has no presence"},
		{"bad name", "", `{"op":"presence_stats","channel":"a b"}`, "bad channel name"},
		{"data", "", `{"op":"presence","channel":"room:1","data":1}`, `"data" belongs to publish`},
		{"not allowed", "news", `{"op":"presence","channel":"room:1"}`, "not allowed"},
	} {
		claims := jwt.MapClaims{"sub": "mallory"}
		if tc.claims != "" {
			claims["subscribe"] = []string{tc.claims}
		}
		c := dialGorilla(t, "ws://"+s.addr+"/ws?channel=news"+presenceToken(t, claims))
		readEvent(t, c)
		sendJSON(t, c, tc.msg)
		if e := readEvent(t, c); e.Type != "error" || !strings.Contains(e.Reason, tc.reason) {
			t.Errorf("%s: got %+v, want an error with %q", tc.name, e, tc.reason)
		}
	}

	base := "http://" + s.addr + "/api/"
	var list struct {
		Channel string
		Members []Member
	}
	if code := apiGetJSON(t, base+"presence?channel=room:1", "k3y", &list); code != 200 || list.Channel != "room:1" || len(list.Members) != 2 {
		t.Fatalf("GET /api/presence: %d %+v", code, list)
	}
	var st PresenceStats
	if code := apiGetJSON(t, base+"presence_stats?channel=room:1", "k3y", &st); code != 200 || st != (PresenceStats{Channel: "room:1", Clients: 2, Users: 2}) {
		t.Fatalf("GET /api/presence_stats: %d %+v", code, st)
	}
	var out map[string]string
	if code := apiGetJSON(t, base+"presence?channel=news", "k3y", &out); code != 400 || !strings.Contains(out["error"], "no presence") {
		t.Fatalf("GET /api/presence of a plain channel: %d %v", code, out)
	}
	if code := apiGetJSON(t, base+"presence?channel=room:1", "wrong", &out); code != 401 {
		t.Fatalf("GET /api/presence with a wrong key: %d %v", code, out)
	}

	alice.Close()
	if e := readEvent(t, watcher); e.Type != "leave" || e.Member.Client != aliceID {
		t.Fatalf("got %+v, want alice's leave", e)
	}
	sendJSON(t, watcher, `{"op":"unsubscribe","channel":"room:1"}`)
	readEvent(t, watcher)
	eventually(t, 5*time.Second, func() error {
		if m, _, _ := s.Presence("room:1"); len(m) != 0 || s.Stats().PresenceMembers != 0 {
			return fmt.Errorf("members %v, %d tracked, want none", m, s.Stats().PresenceMembers)
		}
		return nil
	})
}

// Past PresenceMaxMembers a join is neither tracked nor announced and the
// answer says truncated; a quiet channel tracks members without events.
func TestPresence_MaxMembersAndQuiet(t *testing.T) {
	t.Parallel()
	s := runChannels(t, server.Config{}, Config{PresenceChannels: []string{"room:*", "quiet:*"}, PresenceQuietChannels: []string{"quiet:*"}, PresenceMaxMembers: 2})
	var room []*websocket.Conn
	for range 3 {
		c := dialGorilla(t, "ws://"+s.addr+"/ws?channel=room:1")
		readNonEvent(t, c)
		room = append(room, c)
	}
	if _, err := s.Publish("room:1", []byte(`"after the joins"`)); err != nil {
		t.Fatal(err)
	}
	var joins []string
	for e := readEvent(t, room[0]); e.Type != "message"; e = readEvent(t, room[0]) {
		joins = append(joins, e.Type)
	}
	if len(joins) != 2 {
		t.Fatalf("the first member heard %v before the message, want 2 joins (the third is past the bound)", joins)
	}
	if m, truncated, _ := s.Presence("room:1"); len(m) != 2 || !truncated {
		t.Fatalf("presence %v truncated %v, want 2 members and truncated", m, truncated)
	}
	room[2].Close() // the untracked one: the answer is whole again
	eventually(t, 5*time.Second, func() error {
		if m, truncated, _ := s.Presence("room:1"); len(m) != 2 || truncated {
			return fmt.Errorf("presence %v truncated %v, want 2 members, not truncated", m, truncated)
		}
		return nil
	})

	quiet := []*websocket.Conn{dialGorilla(t, "ws://"+s.addr+"/ws?channel=quiet:1"), dialGorilla(t, "ws://"+s.addr+"/ws?channel=quiet:1")}
	for _, c := range quiet {
		readEvent(t, c)
	}
	if _, err := s.Publish("quiet:1", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if e := readEvent(t, quiet[0]); e.Type != "message" {
		t.Fatalf("a quiet channel's member got %+v, want only the message", e)
	}
	if m, _, _ := s.Presence("quiet:1"); len(m) != 2 {
		t.Fatalf("quiet channel: %d members, want 2", len(m))
	}
}

// A node that starts after another has many members learns them all at
// once (it asks with a sync note), although the state takes many notes
// (a channel split in parts): every member, every info.
func TestPresence_LateNodeLearnsBigChannel(t *testing.T) {
	t.Parallel()
	shared := NewMemoryBroker(BrokerOptions{})
	sc := server.Config{Auth: &server.Auth{HMACSecret: presenceSecret}}
	pc := Config{Broker: shared, PresenceChannels: []string{"big"}, PresenceExpiry: time.Minute} // no round for 20 s
	a := newNode(t, sc, pc).serve(t)
	const members = 200
	pad := strings.Repeat("x", 900)
	for i := range members {
		c := dialGorilla(t, "ws://"+a.addr+"/ws?channel=big"+presenceToken(t, jwt.MapClaims{"sub": fmt.Sprint("u", i), "info": map[string]any{"pad": pad}}))
		readEvent(t, c)
	}
	if m, _, _ := a.Presence("big"); len(m) != members {
		t.Fatalf("node a: %d members, want %d", len(m), members)
	}
	b := newNode(t, sc, pc).serve(t)
	eventually(t, 5*time.Second, func() error {
		m, truncated, _ := b.Presence("big")
		if len(m) != members || truncated {
			return fmt.Errorf("node b: %d members (truncated %v), want %d", len(m), truncated, members)
		}
		for _, mb := range m {
			if !strings.Contains(string(mb.Info), pad) {
				return fmt.Errorf("member %s without its info", mb.Client)
			}
		}
		return nil
	})
	if st := b.Stats(); st.PresenceMembers != members || st.BusNotesDropped != 0 {
		t.Fatalf("node b: %+v", st)
	}
}

// lossyBroker is one node's client of a shared MemoryBroker that loses
// the node's bus notes of the kind set by lose ("*" every kind), as a
// broker outage would.
type lossyBroker struct {
	*MemoryBroker
	mu     sync.Mutex
	losing string
	lost   map[string]int // notes lost, by kind
}

func (b *lossyBroker) lose(kind string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.losing = kind
}

func (b *lossyBroker) Publish(ctx context.Context, channel string, data []byte) (Position, error) {
	if channel == busChannel {
		var nt note
		_ = json.Unmarshal(data, &nt)
		b.mu.Lock()
		lost := b.losing == "*" || b.losing == nt.Kind
		if lost {
			b.lost[nt.Kind]++
		}
		b.mu.Unlock()
		if lost {
			return Position{}, nil
		}
	}
	return b.MemoryBroker.Publish(ctx, channel, data)
}

// waitLost waits until a note of kind was lost.
func (b *lossyBroker) waitLost(t *testing.T, kind string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.lost[kind] == 0 {
			return fmt.Errorf("no %s note lost yet", kind)
		}
		return nil
	})
}

// lossyPair serves two nodes with presence on "room" and expiry, a on a
// lossyBroker, and a subscriber of room on b that has read its own join.
func lossyPair(t *testing.T, expiry time.Duration) (*lossyBroker, *testNode, *testNode, *websocket.Conn) {
	t.Helper()
	shared := NewMemoryBroker(BrokerOptions{})
	lossy := &lossyBroker{MemoryBroker: shared, lost: make(map[string]int)}
	pc := Config{PresenceChannels: []string{"room"}, PresenceExpiry: expiry}
	pc.Broker = lossy
	a := newNode(t, server.Config{}, pc).serve(t)
	pc.Broker = shared
	b := newNode(t, server.Config{}, pc).serve(t)
	watcher := dialGorilla(t, "ws://"+b.addr+"/ws?channel=room")
	readEvent(t, watcher)
	if e := readEvent(t, watcher); e.Type != "join" {
		t.Fatalf("got %+v, want the watcher's own join", e)
	}
	return lossy, a, b, watcher
}

// Notes lost on the way are repaired by the next round: a join the other
// node never heard of arrives with the sender's state, a leave it never
// heard of with the beat that ends a round without the member; the other
// node's subscribers get both events, in order.
func TestPresence_RoundsRepairLostNotes(t *testing.T) {
	t.Parallel()
	lossy, a, b, watcher := lossyPair(t, 900*time.Millisecond)
	count := func(n *testNode) int {
		m, _, _ := n.Presence("room")
		return len(m)
	}
	eventually(t, 5*time.Second, func() error { // a knows the watcher: the bus is live both ways
		if count(a) != 1 {
			return fmt.Errorf("a: %d members, want 1", count(a))
		}
		return nil
	})

	lossy.lose("*")
	member := dialGorilla(t, "ws://"+a.addr+"/ws?channel=room")
	readNonEvent(t, member)
	lossy.waitLost(t, kindJoin)
	if count(b) != 1 {
		t.Fatalf("b heard the lost join: %d members", count(b))
	}
	lossy.lose("")
	e := readEvent(t, watcher) // from a's next round, within a heartbeat
	if e.Type != "join" || e.Member == nil || !strings.HasPrefix(e.Member.Client, string(a.bus.id)) {
		t.Fatalf("got %+v, want the member's join from a's round", e)
	}
	if count(b) != 2 {
		t.Fatalf("b: %d members after the round, want 2", count(b))
	}
	joined := e.Member.Client

	lossy.lose("*")
	member.Close()
	lossy.waitLost(t, kindLeave)
	lossy.lose("")
	if e := readEvent(t, watcher); e.Type != "leave" || e.Member.Client != joined {
		t.Fatalf("got %+v, want the member's leave from a's beat", e)
	}
	if count(b) != 1 {
		t.Fatalf("b: %d members after the beat, want 1", count(b))
	}
}

// A node closed after its server says goodbye: the other nodes drop its
// members at once, not after the expiry, even when its clients' leaves
// were lost (a whole node's may not fit the bus's queue).
func TestPresence_GoodbyeAfterShutdown(t *testing.T) {
	t.Parallel()
	lossy, a, b, watcher := lossyPair(t, time.Minute)
	member := dialGorilla(t, "ws://"+a.addr+"/ws?channel=room")
	readNonEvent(t, member)
	e := readEvent(t, watcher)
	if e.Type != "join" {
		t.Fatalf("got %+v, want the member's join", e)
	}
	lossy.lose(kindLeave)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	lossy.waitLost(t, kindLeave)
	// At once: readEvent waits far less than the minute of the expiry.
	if got := readEvent(t, watcher); got.Type != "leave" || got.Member.Client != e.Member.Client {
		t.Fatalf("got %+v, want the member's leave at once", got)
	}
	if m, _, _ := b.Presence("room"); len(m) != 1 {
		t.Fatalf("b: %d members, want the watcher alone", len(m))
	}
}
