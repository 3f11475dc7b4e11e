package pubsub

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// The registry: the channels this node carries (those with subscribers
// here), by name and by hub, made on a subscribe within MaxChannels and
// the connection's ChannelCreateRate, and swept once they have none.

// channel is one channel this node carries; its mu orders deliveries and
// subscribes (see channels.go).
type channel struct {
	name  string
	hub   *server.Hub
	epoch string // identifies this history: offsets restart with a new epoch

	mu      sync.Mutex
	offset  uint64        // of the last message delivered here
	dead    bool          // removed from the registry: look the name up again
	live    bool          // the broker delivers it here: a Router confirmed its route (routing.go)
	waiting []waitingJoin // subscribes held until live

	touched int64 // unix ns when the broker last heard of this channel from here (sweeper only)
}

// registry holds the channels with subscribers on this node, by name and
// by hub.
type registry struct {
	mu   sync.RWMutex
	m    map[string]*channel
	hubs map[*server.Hub]struct{}
}

// ChannelInfo describes one channel for presence.
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
	Offset      uint64 `json:"offset"`
	Epoch       string `json:"epoch"`
}

// lockChannel returns channel name, created if need be (within c's
// ChannelCreateRate), with its mu held.
func (n *Node) lockChannel(name string, c *server.Conn) (*channel, error) {
	for {
		n.chans.mu.RLock()
		ch := n.chans.m[name]
		n.chans.mu.RUnlock()
		if ch == nil {
			n.chans.mu.Lock()
			if ch = n.chans.m[name]; ch == nil {
				if len(n.chans.m) >= n.cfg.MaxChannels {
					n.chans.mu.Unlock()
					return nil, fmt.Errorf("%w (%d)", ErrTooManyChannels, n.cfg.MaxChannels)
				}
				if _, err := n.creators.reserve(c); err != nil {
					n.chans.mu.Unlock()
					return nil, err
				}
				ch = &channel{name: name, hub: n.srv.NewHub(), touched: time.Now().UnixNano()} // epoch and offset: the broker's, at the first subscribe
				_, routed := n.broker.(Router)
				ch.live = !routed
				n.chans.m[name] = ch
				n.chans.hubs[ch.hub] = struct{}{}
				n.presence.setHub(name, ch.hub, nil)
				n.carry(name, true)
				n.route(ch) // before the first subscriber reads history
			}
			n.chans.mu.Unlock()
		}
		ch.mu.Lock()
		if !ch.dead {
			return ch, nil
		}
		ch.mu.Unlock()
	}
}

// sweep removes the channels this node no longer has subscribers for
// (their history stays with the broker, which learns that this node
// released them: Broker.Release), and keeps the others alive in the
// broker: a channel unused for HistoryTTL starts a new epoch there, which
// would tell subscribers of a quiet channel that they lost messages. It
// runs on the sweeper.
func (n *Node) sweep() {
	var empty []*channel
	var due []string
	now := time.Now().UnixNano()
	touch := !n.chores.Load() && n.broker.Ready()
	n.chans.mu.RLock()
	for _, ch := range n.chans.m {
		switch {
		case ch.hub.Joined() == 0:
			empty = append(empty, ch)
		case touch && now-ch.touched > int64(n.cfg.HistoryTTL/2):
			ch.touched = now
			due = append(due, ch.name)
		}
	}
	n.chans.mu.RUnlock()
	n.released = append(n.released, n.remove(empty)...)
	if len(n.released) > n.cfg.MaxChannels { // a stuck broker: the rest count until the TTL
		n.released = n.released[len(n.released)-n.cfg.MaxChannels:]
	}
	if (len(due) > 0 || len(n.released) > 0) && n.broker.Ready() && n.chores.CompareAndSwap(false, true) {
		released := n.released
		n.released = nil
		// Off the sweeper: a slow broker must not hold up timeouts and pings.
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer n.chores.Store(false)
			n.brokerChores(due, released)
		}()
	}
}

// brokerChores touches the due channels in the broker and releases those
// this node no longer carries, giving up at the first failure: a missed
// touch is caught up on the next delivery, a missed release counts until
// the history TTL.
func (n *Node) brokerChores(due, released []string) {
	for _, name := range due {
		ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		_, _, err := n.broker.History(ctx, name, 0, 0)
		cancel()
		if err != nil {
			return
		}
	}
	for _, name := range released {
		ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		err := n.broker.Release(ctx, name)
		cancel()
		if err != nil {
			return
		}
	}
}

// remove forgets the channels of empty that still have no subscriber and
// returns their names.
func (n *Node) remove(empty []*channel) []string {
	var names []string
	if len(empty) == 0 {
		return nil
	}
	n.chans.mu.Lock()
	defer n.chans.mu.Unlock()
	for _, ch := range empty {
		ch.mu.Lock()
		// Joined, not Len: a conn that joined in OnConnect before it had a
		// socket (Handler) is a subscriber too; so is one awaiting the route.
		if ch.hub.Joined() == 0 && !n.awaiting(ch) {
			ch.dead = true
			delete(n.chans.m, ch.name)
			delete(n.chans.hubs, ch.hub)
			ch.hub.Release()
			n.presence.setHub(ch.name, nil, ch.hub)
			n.carry(ch.name, false)
			n.unroute(ch.name)
			names = append(names, ch.name)
		}
		ch.mu.Unlock()
	}
	return names
}

// Channels lists the channels with subscribers on this node, sorted by
// name: presence.
func (n *Node) Channels() []ChannelInfo {
	n.chans.mu.RLock()
	list := make([]ChannelInfo, 0, len(n.chans.m))
	for _, ch := range n.chans.m {
		ch.mu.Lock()
		list = append(list, ChannelInfo{Channel: ch.name, Subscribers: ch.hub.Len(), Offset: ch.offset, Epoch: ch.epoch})
		ch.mu.Unlock()
	}
	n.chans.mu.RUnlock()
	slices.SortFunc(list, func(a, b ChannelInfo) int { return cmp.Compare(a.Channel, b.Channel) })
	return list
}

// subscriptions counts c's channels, joined or deferred.
func (n *Node) subscriptions(c *server.Conn) int {
	count := n.pending.count(c)
	n.chans.mu.RLock()
	defer n.chans.mu.RUnlock()
	for _, h := range c.Hubs() {
		if _, ok := n.chans.hubs[h]; ok {
			count++
		}
	}
	return count
}

// subscribed reports whether c is a subscriber of channel on this node,
// or waits for its route.
func (n *Node) subscribed(c *server.Conn, channel string) bool {
	n.chans.mu.RLock()
	ch := n.chans.m[channel]
	n.chans.mu.RUnlock()
	if ch == nil {
		return false
	}
	if slices.Contains(c.Hubs(), ch.hub) {
		return true
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return slices.ContainsFunc(ch.waiting, func(w waitingJoin) bool { return w.c == c })
}

// localSubscribers counts channel's subscribers on this node.
func (n *Node) localSubscribers(channel string) int {
	n.chans.mu.RLock()
	defer n.chans.mu.RUnlock()
	if ch := n.chans.m[channel]; ch != nil {
		return ch.hub.Len()
	}
	return 0
}
