package pubsub

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// Channels are named hubs fed by the broker (Config.Broker: in-process by
// default, or Redis), which gives each message its offset in the channel
// and keeps a bounded history, so that a client that reconnects can ask for
// what it missed. A node keeps a channel while it has subscribers.
//
// A channel's mu orders, on this node, the broker's deliveries to the hub
// and subscribes: under mu a subscriber reads its position and the history
// it missed, queues its reply and those messages, then joins the hub, so
// every later delivery follows them. A message published just before the
// subscribe may still reach it after the reply, from the hub's pending flush
// (and twice when history also holds it); its offset is at most the reply's,
// and clients drop offsets they have already seen.

// MaxChannelNameBytes is the longest channel name.
const MaxChannelNameBytes = 128

type channel struct {
	name  string
	hub   *server.Hub
	epoch string // identifies this history: offsets restart with a new epoch

	mu     sync.Mutex
	offset uint64 // of the last message delivered here
	dead   bool   // removed from the registry: look the name up again

	touched int64 // unix ns when the broker last heard of this channel from here (sweeper only)
}

// Publication is what Publish did with one message.
type Publication struct {
	Channel   string `json:"channel"`
	Offset    uint64 `json:"offset"`    // the message's offset in the channel
	Epoch     string `json:"epoch"`     // the channel history it belongs to
	Delivered int    `json:"delivered"` // connections on this server it was queued for
}

// Position is where a subscriber left a channel: the last offset it
// received, in the channel history called Epoch.
type Position struct {
	Offset uint64
	Epoch  string // "" trusts Offset without checking the epoch
}

// ChannelInfo describes one channel for presence.
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
	Offset      uint64 `json:"offset"`
	Epoch       string `json:"epoch"`
}

// CheckChannelName reports why name cannot be a channel: empty, longer than
// MaxChannelNameBytes, or with a byte outside A-Z a-z 0-9 _ - . : @ / =.
func CheckChannelName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrChannelName)
	}
	if len(name) > MaxChannelNameBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrChannelName, len(name), MaxChannelNameBytes)
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; !channelByte[b] {
			return fmt.Errorf("%w: byte %q at %d; only A-Z a-z 0-9 _ - . : @ / = are allowed", ErrChannelName, b, i)
		}
	}
	return nil
}

var channelByte = func() (t [256]bool) {
	for _, r := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/=" {
		t[r] = true
	}
	return t
}()

// Publish sends data, one JSON value, to every subscriber of channel as
// {"type":"message","channel":..,"offset":..,"data":data}, serialized once
// per node: the broker assigns the offset, keeps it in the channel's
// history and delivers it to every node. Delivered counts this node's
// subscribers. It never blocks on a client socket.
func (n *Node) Publish(channel string, data []byte) (Publication, error) {
	if err := CheckChannelName(channel); err != nil {
		return Publication{}, err
	}
	if !json.Valid(data) {
		return Publication{}, ErrInvalidJSON
	}
	if envelopeBytes(channel, data) > n.maxMessageBytes {
		return Publication{}, server.ErrTooLarge
	}
	b := n.broker
	if !b.Ready() {
		return Publication{}, ErrBrokerUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	pos, err := b.Publish(ctx, channel, data)
	if err != nil {
		return Publication{}, brokerError(err)
	}
	n.stats.publications.Add(1)
	return Publication{Channel: channel, Offset: pos.Offset, Epoch: pos.Epoch, Delivered: n.localSubscribers(channel)}, nil
}

// brokerError is what Publish and Subscribe return for a broker call's
// err: a channel cap as it is, anything else as ErrBrokerUnavailable (a
// client may retry later).
func brokerError(err error) error {
	if errors.Is(err, ErrTooManyChannels) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
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

const envelopeOverhead = len(`{"type":"message","channel":"","offset":18446744073709551615,"data":}`)

func envelopeBytes(channel string, data []byte) int {
	return envelopeOverhead + len(channel) + len(data)
}

// messageFrame is m as subscribers receive it, built once for all of them.
func messageFrame(m Message) *frame.Prepared {
	return frame.NewPrepared(frame.OpText, appendEnvelope(nil, m.Channel, m.Offset, m.Data))
}

// appendEnvelope appends a message envelope; channel names need no
// escaping. Offset 0 (a message injected into the broker from outside) is
// left out.
func appendEnvelope(b []byte, channel string, offset uint64, data []byte) []byte {
	b = append(b, `{"type":"message","channel":"`...)
	b = append(b, channel...)
	b = append(b, '"')
	if offset > 0 {
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, offset, 10)
	}
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// Subscribe adds c to channel and sends it {"type":"subscribed",...} with
// the channel's epoch and latest offset. With since, the messages c missed
// after it follow, preceded by a {"type":"gap",...} notice when the history
// no longer holds all of them (or holds another epoch).
func (n *Node) Subscribe(c *server.Conn, channel string, since *Position) error {
	return n.subscribe(c, channel, since, nil)
}

func (n *Node) subscribe(c *server.Conn, name string, since *Position, id json.RawMessage) error {
	if err := CheckChannelName(name); err != nil {
		return err
	}
	if !n.Allowed(c, ActionSubscribe, name) {
		return ErrForbidden
	}
	if n.cfg.OnSubscribe != nil {
		if err := n.cfg.OnSubscribe(c, name); err != nil {
			return err
		}
	}
	if n.subscriptions(c) >= n.cfg.MaxChannelsPerConn {
		return fmt.Errorf("%w (%d)", ErrSubscriptionLimit, n.cfg.MaxChannelsPerConn)
	}
	if n.deferJoin(c, name, since, id) {
		return nil
	}
	return n.join(c, name, since, id)
}

// pendingSubs counts, per connection, the subscribes deferred until it
// has a socket (Conn.DeferUntilAttached), for MaxChannelsPerConn.
type pendingSubs struct {
	mu sync.Mutex
	m  map[*server.Conn]int
}

func (p *pendingSubs) add(c *server.Conn, d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[c] += d; p.m[c] == 0 {
		delete(p.m, c)
	}
}

func (p *pendingSubs) count(c *server.Conn) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[c]
}

// deferJoin keeps a subscribe made before c has a socket (Handler, from
// OnConnect) until it has one: joining only once c can be a hub member,
// under the channel's lock, is what keeps the messages published in
// between. A refusal then can only be an error reply.
func (n *Node) deferJoin(c *server.Conn, name string, since *Position, id json.RawMessage) bool {
	n.pending.add(c, 1)
	deferred := c.DeferUntilAttached(func(attached bool) {
		n.pending.add(c, -1)
		if !attached {
			return
		}
		if err := n.join(c, name, since, id); err != nil {
			_ = c.SendPrepared(replyFrame(reply{Type: "error", Op: "subscribe", Channel: name, ID: id, Reason: reasonOf(err)}))
		}
	})
	if !deferred {
		n.pending.add(c, -1)
	}
	return deferred
}

// join subscribes c, checks done: under the channel's lock it queues the
// reply and what c missed, then joins the hub.
func (n *Node) join(c *server.Conn, name string, since *Position, id json.RawMessage) error {
	ch, err := n.lockChannel(name, c)
	if err != nil {
		return err
	}
	defer ch.mu.Unlock()
	if since != nil && slices.Contains(c.Hubs(), ch.hub) {
		// Joined already: c has had every message since, and replaying
		// history on every such request would turn a few bytes in into
		// megabytes out.
		since = nil
	}
	giveBack := func() {}
	if since != nil { // a broker read and maybe half a send queue out
		if giveBack, err = n.replays.reserve(c); err != nil {
			return err
		}
	}
	top, kept, err := n.position(ch, since)
	if err != nil || len(kept) == 0 {
		giveBack()
	}
	if err != nil {
		return err
	}
	frames := []*frame.Prepared{replyFrame(reply{Type: "subscribed", Channel: name, Epoch: top.Epoch, Offset: &top.Offset, ID: id})}
	if since != nil {
		frames = n.replay(name, *since, top, kept, frames)
	}
	// Queue the reply and the recovered messages before joining: a hub
	// flush can deliver a frame published before the join as soon as c is
	// a member, and it must not overtake them.
	if err := c.SendPrepared(frames...); err != nil {
		return err
	}
	return ch.hub.Join(c)
}

// position returns ch's latest position and, for a subscriber at since,
// the kept messages from the broker's history it may replay. ch.mu is held.
func (n *Node) position(ch *channel, since *Position) (Position, []Message, error) {
	b := n.broker
	if !b.Ready() {
		return Position{}, nil, ErrBrokerUnavailable
	}
	if since == nil && ch.epoch != "" {
		// This node already delivers the channel: what it delivered last is
		// the position, and every later offset reaches the hub after this
		// subscriber joins. No broker call, so a reconnect storm costs the
		// broker one call per channel and node, not one per client.
		return Position{Offset: ch.offset, Epoch: ch.epoch}, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	after, limit := uint64(0), 0
	if since != nil {
		after, limit = since.Offset, max(n.cfg.HistorySize, 0)
	}
	top, msgs, err := b.History(ctx, ch.name, after, limit)
	if err == nil && since != nil {
		if from, _ := replayFrom(*since, top); from != after {
			top, msgs, err = b.History(ctx, ch.name, from, limit) // another epoch: replay it all
		}
	}
	if err != nil {
		return Position{}, nil, brokerError(err)
	}
	if ch.epoch == "" { // this node's first subscriber: deliveries continue from here
		ch.epoch, ch.offset = top.Epoch, top.Offset
	}
	return top, msgs, nil
}

// replayFrom returns the offset after which a subscriber at since can
// replay top's history, and why it cannot simply continue from since.
func replayFrom(since, top Position) (uint64, string) {
	switch {
	case since.Epoch != "" && since.Epoch != top.Epoch:
		return 0, gapEpoch
	case since.Offset > top.Offset:
		return 0, gapAhead
	}
	return since.Offset, ""
}

// replay appends to frames what a subscriber at since missed of kept
// (messages after replayFrom's offset, oldest first): a gap notice if they
// cannot cover it all, then the messages, at most half of
// Config.SendQueueBytes of them (the newest).
func (n *Node) replay(name string, since, top Position, kept []Message, frames []*frame.Prepared) []*frame.Prepared {
	from, reason := replayFrom(since, top)
	budget := n.sendQueueBytes / 2
	for i := len(kept) - 1; i >= 0; i-- { // trimmed before any frame is built
		if budget -= envelopeBytes(name, kept[i].Data); budget < 0 {
			kept = kept[i+1:]
			break
		}
	}
	first := top.Offset + 1 // the oldest offset sent
	if len(kept) > 0 {
		first = kept[0].Offset
	}
	gap := reply{Type: "gap", Channel: name, Since: &since.Offset, First: &first, Reason: reason}
	switch {
	case reason != "": // offsets went back: a reset, told with the epoch
		gap.Epoch = top.Epoch
	case first > from+1:
		gap.Reason = gapLost
	}
	if gap.Reason != "" {
		frames = append(frames, replyFrame(gap))
	}
	for _, m := range kept {
		frames = append(frames, messageFrame(m))
	}
	return frames
}

// Unsubscribe removes c from channel.
func (n *Node) Unsubscribe(c *server.Conn, channel string) {
	n.chans.mu.RLock()
	ch := n.chans.m[channel]
	n.chans.mu.RUnlock()
	if ch != nil {
		ch.hub.Leave(c)
	}
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

// registry holds the channels with subscribers on this node, by name and
// by hub.
type registry struct {
	mu   sync.RWMutex
	m    map[string]*channel
	hubs map[*server.Hub]struct{}
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
				n.chans.m[name] = ch
				n.chans.hubs[ch.hub] = struct{}{}
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

// sweep removes the channels this node no longer has subscribers
// for (their history stays with the broker), and keeps the others alive in
// the broker: a channel unused for HistoryTTL starts a new epoch there,
// which would tell subscribers of a quiet channel that they lost messages.
// It runs on the sweeper.
func (n *Node) sweep() {
	var empty, due []*channel
	now := time.Now().UnixNano()
	touch := !n.touching.Load() && n.broker.Ready()
	n.chans.mu.RLock()
	for _, ch := range n.chans.m {
		switch {
		case ch.hub.Joined() == 0:
			empty = append(empty, ch)
		case touch && now-ch.touched > int64(n.cfg.HistoryTTL/2):
			ch.touched = now
			due = append(due, ch)
		}
	}
	n.chans.mu.RUnlock()
	if len(due) > 0 && n.touching.CompareAndSwap(false, true) {
		// Off the sweeper: a slow broker must not hold up timeouts and pings.
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer n.touching.Store(false)
			for _, ch := range due {
				ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
				_, _, err := n.broker.History(ctx, ch.name, 0, 0) // a failure is caught up on the next delivery
				cancel()
				if err != nil {
					return
				}
			}
		}()
	}
	if len(empty) == 0 {
		return
	}
	n.chans.mu.Lock()
	for _, ch := range empty {
		ch.mu.Lock()
		// Joined, not Len: a conn that joined in OnConnect before it had a
		// socket (Handler) is a subscriber too.
		if ch.hub.Joined() == 0 {
			ch.dead = true
			delete(n.chans.m, ch.name)
			delete(n.chans.hubs, ch.hub)
			ch.hub.Release()
		}
		ch.mu.Unlock()
	}
	n.chans.mu.Unlock()
}

// NewEpoch returns a random name for a new channel history, for brokers:
// offsets restart with each epoch.
func NewEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reply is every JSON message the server sends on its own: acks, errors
// and gap notices. Rare, so encoding/json is fine here.
type reply struct {
	Type      string          `json:"type"`
	Op        string          `json:"op,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Offset    *uint64         `json:"offset,omitempty"`
	Since     *uint64         `json:"since,omitempty"`
	First     *uint64         `json:"first,omitempty"`
	Delivered *int            `json:"delivered,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	ID        json.RawMessage `json:"id,omitempty"`
}

// replyFrame serializes r as a text frame.
func replyFrame(r reply) *frame.Prepared {
	return frame.NewPrepared(frame.OpText, replyPayload(r))
}

func replyPayload(r reply) []byte {
	b, err := json.Marshal(r)
	if err != nil { // only ID could fail, and it was parsed as a number
		b = []byte(`{"type":"error","reason":"internal: reply not serializable"}`)
	}
	return b
}
