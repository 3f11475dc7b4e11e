package pubsubtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/golang-jwt/jwt/v5"
)

// PresenceSecret signs the tokens of Token.
var PresenceSecret = []byte("pubsubtest-presence-secret")

// Token is a token for user, with the info claim {"name":user}, signed
// with PresenceSecret.
func Token(tb testing.TB, user string) string {
	tb.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "info": map[string]any{"name": user}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(PresenceSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// ReadSkipping reads c's next message that is not a presence event.
func (c *Client) ReadSkipping() testutil.Event {
	c.tb.Helper()
	for {
		if e := c.Read(); e.Type != "join" && e.Type != "leave" {
			return e
		}
	}
}

// PresenceUsers checks a presence answer whose members are each a user of
// Token, and returns their users, sorted.
func PresenceUsers(members []testutil.Member) ([]string, error) {
	var users []string
	for _, m := range members {
		if want := fmt.Sprintf(`{"name":%q}`, m.User); string(m.Info) != want || m.Client == "" {
			return nil, fmt.Errorf("member %+v: want a client id and info %s", m, want)
		}
		users = append(users, m.User)
	}
	slices.Sort(users)
	return users, nil
}

// EventLog follows a subscriber's join and leave events: each member must
// join before it leaves, and join again only after it left.
type EventLog struct {
	members map[string]bool   // by user, as events left them
	seen    map[string]string // every event of each user, "j" or "l"
}

// NewEventLog starts a log for a subscriber that joined when users were
// members already.
func NewEventLog(users ...string) *EventLog {
	l := &EventLog{members: make(map[string]bool), seen: make(map[string]string)}
	for _, u := range users {
		l.members[u] = true
	}
	return l
}

// Add takes one event, failing on one out of order.
func (l *EventLog) Add(e testutil.Event) error {
	if e.Member == nil {
		return fmt.Errorf("%s event without a member: %+v", e.Type, e)
	}
	u := e.Member.User
	switch {
	case e.Type == "join" && l.members[u]:
		return fmt.Errorf("%s joined again without leaving (events %s)", u, l.seen[u])
	case e.Type == "leave" && !l.members[u]:
		return fmt.Errorf("%s left without joining (events %s)", u, l.seen[u])
	}
	l.members[u] = e.Type == "join"
	l.seen[u] += e.Type[:1]
	return nil
}

// Users lists the members the events left, sorted.
func (l *EventLog) Users() []string {
	var users []string
	for u, in := range l.members {
		if in {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	return users
}

// Seen is every event of user, in order: "j" a join, "l" a leave.
func (l *EventLog) Seen(user string) string { return l.seen[user] }

// Until reads c's events into l until its members are want, failing on
// an event out of order or on anything but an event.
func (l *EventLog) Until(c *Client, want ...string) {
	c.tb.Helper()
	want = slices.Sorted(slices.Values(want))
	for !slices.Equal(l.Users(), want) {
		e := c.Read()
		if e.Type != "join" && e.Type != "leave" {
			c.tb.Fatalf("got %+v, want a presence event (members now %v, want %v)", e, l.Users(), want)
		}
		if err := l.Add(e); err != nil {
			c.tb.Fatal(err)
		}
	}
}

// PresenceNode is a node as PresenceScenario drives it: in this process
// (the suite's) or a process of its own (cmd/fanout's).
type PresenceNode interface {
	// WS is the node's channel endpoint, ws://host:port/ws.
	WS() string
	// Presence is the node's answer for channel.
	Presence(channel string) (members []testutil.Member, truncated bool, err error)
	// Kill ends the node without a word to the others.
	Kill()
}

// inProcess is a suite's Node as a PresenceNode.
type inProcess struct{ *Node }

func (n inProcess) WS() string { return "ws://" + n.Addr + "/ws" }

func (n inProcess) Presence(channel string) ([]testutil.Member, bool, error) {
	members, truncated, err := n.Node.Presence(channel)
	var got []testutil.Member
	if err == nil {
		b, _ := json.Marshal(members)
		err = json.Unmarshal(b, &got)
	}
	return got, truncated, err
}

// Kill stops the node before its server, so the leaves of its closing
// connections never reach the broker.
func (n inProcess) Kill() {
	n.Close()
	_ = n.Srv.Close()
}

// Three nodes with presence on room:* (PresenceExpiry 3 s, tokens signed
// with PresenceSecret).
func presenceAcrossNodes(t *testing.T, c *cluster) {
	cfg := pubsub.Config{PresenceChannels: []string{"room:*"}, PresenceExpiry: PresenceExpiry}
	sc := server.Config{Auth: &server.Auth{HMACSecret: PresenceSecret}}
	ns := make([]*Node, 3)
	pns := make([]PresenceNode, 3)
	for i := range ns {
		ns[i] = c.serve(t, sc, cfg)
		pns[i] = inProcess{ns[i]}
	}
	WaitReady(t, c.ready, ns...)
	PresenceScenario(t, pns, c.ready)
}

// PresenceExpiry is the presence expiry PresenceScenario's nodes must
// have.
const PresenceExpiry = 3 * time.Second

// PresenceScenario runs on three nodes with presence on room:* and
// PresenceExpiry, that check tokens signed with PresenceSecret: members
// join and leave on different nodes (unsubscribe, close), then the third
// node dies without a word (Kill). Every node's answer equals the true set
// (within settle, then within the expiry for the dead node's members); the
// control ops answer the same; subscribers on two nodes get every join and
// leave in order per member.
func PresenceScenario(t *testing.T, ns []PresenceNode, settle time.Duration) {
	join := func(n PresenceNode, user string) *Client {
		cl := Dial(t, n.WS()+"?channel=room:1&token="+Token(t, user))
		if e := cl.ReadSkipping(); e.Type != "subscribed" {
			t.Fatalf("%s: got %+v", user, e)
		}
		return cl
	}
	agree := func(timeout time.Duration, nodes []PresenceNode, want ...string) {
		t.Helper()
		want = slices.Sorted(slices.Values(want))
		testutil.Eventually(t, timeout, func() error {
			for i, n := range nodes {
				members, truncated, err := n.Presence("room:1")
				if err != nil {
					return err
				}
				users, err := PresenceUsers(members)
				if err != nil {
					return err
				}
				if !slices.Equal(users, want) || truncated {
					return fmt.Errorf("node %d: members %v (truncated %v), want %v", i, users, truncated, want)
				}
			}
			return nil
		})
	}
	w0 := join(ns[0], "w0")
	agree(settle, ns[:2], "w0") // w1 joins knowing w0
	w1 := join(ns[1], "w1")
	log0, log1 := NewEventLog(), NewEventLog("w0")
	log0.Until(w0, "w0", "w1")
	log1.Until(w1, "w0", "w1")

	u0, u1 := join(ns[0], "u0"), join(ns[1], "u1")
	join(ns[2], "u2")
	join(ns[2], "u3")
	u4, u5 := join(ns[0], "u4"), join(ns[1], "u5")
	all := []string{"w0", "w1", "u0", "u1", "u2", "u3", "u4", "u5"}
	agree(settle, ns, all...)
	u4.Send(`{"op":"unsubscribe","channel":"room:1","id":1}`)
	if e := u4.ReadSkipping(); e.Type != "unsubscribed" {
		t.Fatalf("u4 unsubscribing: got %+v", e)
	}
	u5.Close()
	agree(settle, ns, all[:6]...)

	ns[2].Kill()
	live := []string{"w0", "w1", "u0", "u1"}
	agree(PresenceExpiry+2*time.Second, ns[:2], live...)

	u0.Send(`{"op":"presence_stats","channel":"room:1","id":2}`)
	if e := u0.ReadSkipping(); e.Type != "presence_stats" || e.Channel != "room:1" || string(e.ID) != "2" || e.Clients == nil || *e.Clients != 4 || *e.Users != 4 {
		t.Fatalf("presence_stats: got %+v", e)
	}
	u1.Send(`{"op":"presence","channel":"room:1","id":3}`)
	e := u1.ReadSkipping()
	if users, err := PresenceUsers(e.Members); e.Type != "presence" || string(e.ID) != "3" || err != nil || !slices.Equal(users, []string{"u0", "u1", "w0", "w1"}) {
		t.Fatalf("presence: got %+v (%v)", e, err)
	}

	for i, l := range []*EventLog{log0, log1} {
		w := []*Client{w0, w1}[i]
		l.Until(w, all...) // everyone joined
		l.Until(w, live...)
		for _, u := range []string{"u0", "u1"} {
			if l.Seen(u) != "j" {
				t.Errorf("watcher %d: events of %s: %q, want one join", i, u, l.Seen(u))
			}
		}
		for _, u := range []string{"u2", "u3", "u4", "u5"} {
			if l.Seen(u) != "jl" {
				t.Errorf("watcher %d: events of %s: %q, want a join then a leave", i, u, l.Seen(u))
			}
		}
	}
}
