package pubsub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// Users: this node's connections by user (the token's or the connect
// hook's "sub"), for the operations on a user across the cluster
// (Disconnect, UnsubscribeUser: notes on the node bus that every node,
// this one included, applies to its own connections) and for
// Config.MaxConnsPerUser. Anonymous connections have no user and are in
// none of this.

// DefaultDisconnectCode is the close code Disconnect sends when given 0:
// in 4500-4999, the range after which fanout.js does not reconnect (a
// kicked client should not come straight back).
const DefaultDisconnectCode frame.CloseCode = 4500

// DefaultDisconnectReason is the close reason Disconnect sends when given
// none.
const DefaultDisconnectReason = "disconnected by the server"

// maxCloseReasonBytes is what a close frame leaves for its reason: 125
// bytes of control payload less 2 for the code (RFC 6455 section 5.5).
const maxCloseReasonBytes = frame.MaxControlPayload - 2

// Bus note kinds of the user operations.
const (
	kindDisconnect  = "user.disconnect"
	kindUnsubscribe = "user.unsubscribe"
)

// userNote is what both operations send on the bus.
type userNote struct {
	User    string          `json:"user"`
	Channel string          `json:"channel,omitempty"`
	Code    frame.CloseCode `json:"code,omitempty"`
	Reason  string          `json:"reason,omitempty"`
}

// users indexes this node's connections by user.
type users struct {
	mu sync.Mutex
	m  map[string][]*server.Conn
}

// add records c as one of user's connections, unless user has max (>0)
// already; it reports whether it did.
func (u *users) add(user string, c *server.Conn, max int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if max > 0 && len(u.m[user]) >= max {
		return false
	}
	u.m[user] = append(u.m[user], c)
	return true
}

// remove forgets c, if it is one of user's connections.
func (u *users) remove(user string, c *server.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cs := u.m[user]
	i := slices.Index(cs, c)
	if i < 0 {
		return
	}
	if len(cs) == 1 {
		delete(u.m, user)
		return
	}
	u.m[user] = slices.Delete(cs, i, i+1)
}

// conns is a copy of user's connections: their operations run without
// u.mu, since closing one calls HandleClose.
func (u *users) conns(user string) []*server.Conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.m[user])
}

// admitUser counts c among its user's connections, refusing it with 429
// past Config.MaxConnsPerUser. HandleConnect calls it, once c's user is
// final (after the token check and the connect hook).
func (n *Node) admitUser(c *server.Conn) error {
	user := c.Subject()
	if user == "" {
		return nil
	}
	if !n.users.add(user, c, n.cfg.MaxConnsPerUser) {
		n.stats.userConns.Add(1)
		return server.Reject(http.StatusTooManyRequests, fmt.Sprintf("user has %d connections on this node already", n.cfg.MaxConnsPerUser))
	}
	return nil
}

// forgetUser undoes admitUser; HandleClose calls it.
func (n *Node) forgetUser(c *server.Conn) {
	if user := c.Subject(); user != "" {
		n.users.remove(user, c)
	}
}

// CheckCloseCode reports why code cannot be sent by a server in a close
// frame (RFC 6455 section 7.4: 1000-1003, 1007-1009, 1011-1014 or
// 3000-4999; 1010 is the client's) or reason cannot follow it.
func CheckCloseCode(code frame.CloseCode, reason string) error {
	if !code.ValidOnWire() || code == frame.CloseMandatoryExtension {
		return fmt.Errorf("close code %d cannot be sent by a server: use 1000-1003, 1007-1009, 1011-1014 or 3000-4999", code)
	}
	if len(reason) > maxCloseReasonBytes {
		return fmt.Errorf("close reason of %d bytes, at most %d", len(reason), maxCloseReasonBytes)
	}
	return nil
}

// Disconnect closes every connection of user on every node with code and
// reason (zero and empty: DefaultDisconnectCode and
// DefaultDisconnectReason). It returns once the order is queued on the
// node bus, before any connection is closed; ErrBrokerUnavailable while
// the bus cannot reach every node.
func (n *Node) Disconnect(user string, code frame.CloseCode, reason string) error {
	if code == 0 {
		code = DefaultDisconnectCode
	}
	if reason == "" {
		reason = DefaultDisconnectReason
	}
	if err := CheckCloseCode(code, reason); err != nil {
		return err
	}
	return n.sendUserNote(kindDisconnect, userNote{User: user, Code: code, Reason: reason})
}

// UnsubscribeUser removes every connection of user on every node from
// channel; each is sent {"type":"unsubscribed","channel":...} (no id).
// Like Disconnect, it returns once the order is queued.
func (n *Node) UnsubscribeUser(user, channel string) error {
	if err := CheckChannelName(channel); err != nil {
		return err
	}
	return n.sendUserNote(kindUnsubscribe, userNote{User: user, Channel: channel})
}

func (n *Node) sendUserNote(kind string, nt userNote) error {
	if nt.User == "" {
		return errNoUser
	}
	if !n.bus.live() {
		return ErrBrokerUnavailable
	}
	return n.bus.send(kind, nt)
}

// handleUsers registers the bus handlers of the user operations, before
// Start. They run on the broker's delivery goroutine: closing and leaving
// a hub only queue work.
func (n *Node) handleUsers() {
	n.bus.handle(kindDisconnect, func(_ nodeID, data json.RawMessage) {
		var nt userNote
		if json.Unmarshal(data, &nt) != nil || CheckCloseCode(nt.Code, nt.Reason) != nil {
			return
		}
		for _, c := range n.users.conns(nt.User) {
			_ = c.Close(nt.Code, nt.Reason)
		}
	})
	n.bus.handle(kindUnsubscribe, func(_ nodeID, data json.RawMessage) {
		var nt userNote
		if json.Unmarshal(data, &nt) != nil || CheckChannelName(nt.Channel) != nil {
			return
		}
		for _, c := range n.users.conns(nt.User) {
			if n.subscribed(c, nt.Channel) {
				n.Unsubscribe(c, nt.Channel)
				_ = c.SendPrepared(replyFrame(reply{Type: "unsubscribed", Channel: nt.Channel}))
			}
		}
	})
}
