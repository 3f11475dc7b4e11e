package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// Channels are named hubs fed by the broker (Config.Broker: in-process by
// default, Redis or RabbitMQ), which gives each message its offset in the channel
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

// Publication is what Publish did with one message.
type Publication struct {
	Channel   string `json:"channel"`
	Offset    uint64 `json:"offset"`    // the message's offset in the channel
	Epoch     string `json:"epoch"`     // the channel history it belongs to
	Delivered int    `json:"delivered"` // connections on this server it was queued for
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
	pubs, errs := n.publishBatch([]Message{{Channel: channel, Data: data}})
	return pubs[0], errs[0]
}

// publishBatch publishes msgs as Publish does, in order, in one broker
// round trip when the broker can (BatchPublisher), and returns each one's
// Publication or error.
func (n *Node) publishBatch(msgs []Message) ([]Publication, []error) {
	pubs, errs := make([]Publication, len(msgs)), make([]error, len(msgs))
	var send []Message
	var at []int // send[k] is msgs[at[k]]
	for i, m := range msgs {
		if errs[i] = n.checkMessage(m.Channel, m.Data); errs[i] == nil {
			send, at = append(send, m), append(at, i)
		}
	}
	if len(send) == 0 {
		return pubs, errs
	}
	b := n.broker
	if !b.Ready() {
		for _, i := range at {
			errs[i] = ErrBrokerUnavailable
		}
		return pubs, errs
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	var pos []Position
	var perr []error
	if bp, ok := b.(BatchPublisher); ok {
		pos, perr = bp.PublishBatch(ctx, send)
	} else {
		pos, perr = make([]Position, len(send)), make([]error, len(send))
		for k, m := range send {
			pos[k], perr[k] = b.Publish(ctx, m.Channel, m.Data)
		}
	}
	for k, i := range at {
		if perr[k] != nil {
			errs[i] = brokerError(perr[k])
			continue
		}
		n.stats.publications.Add(1)
		ch := msgs[i].Channel
		pubs[i] = Publication{Channel: ch, Offset: pos[k].Offset, Epoch: pos[k].Epoch, Delivered: n.localSubscribers(ch)}
	}
	return pubs, errs
}

// checkMessage finds what Publish refuses in a message itself.
func (n *Node) checkMessage(channel string, data []byte) error {
	if err := CheckChannelName(channel); err != nil {
		return err
	}
	if !json.Valid(data) {
		return ErrInvalidJSON
	}
	if envelopeBytes(channel, data) > n.maxMessageBytes {
		return server.ErrTooLarge
	}
	return nil
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

// Subscribe adds c to channel and sends it {"type":"subscribed",...} with
// the channel's epoch and latest offset. With since, the messages c missed
// after it follow, preceded by a {"type":"gap",...} notice when the history
// no longer holds all of them (or holds another epoch). The application
// decides here: Config.PrivateChannels and the backend hook do not apply.
func (n *Node) Subscribe(c *server.Conn, channel string, since *Position) error {
	return n.subscribe(c, channel, since, nil, "", false)
}

// subscribe checks a subscribe and, for one a client asked for (fromClient)
// while Proxy.SubscribeURL is set, asks the backend before admitting it:
// then the outcome, error or ack, reaches c later. A channel token (auth.go)
// stands in for Allowed, the backend and Config.PrivateChannels.
func (n *Node) subscribe(c *server.Conn, name string, since *Position, id json.RawMessage, token string, fromClient bool) error {
	if err := CheckChannelName(name); err != nil {
		return err
	}
	granted := token != ""
	if granted {
		if err := n.checkChannelToken(c, name, token); err != nil {
			return err
		}
	} else if !n.Allowed(c, ActionSubscribe, name) {
		return ErrForbidden
	}
	if n.cfg.OnSubscribe != nil {
		if err := n.cfg.OnSubscribe(c, name); err != nil {
			return err
		}
	}
	if fromClient && !granted && n.backend != nil && n.backend.cfg.SubscribeURL != "" {
		return n.hook(n.backend.cfg.SubscribeURL, c, backendRequest{Channel: name}, func(_ *backendResult, err error) {
			if err == nil {
				err = n.admit(c, name, since, id)
			}
			if err != nil {
				n.hookRefused(c, "subscribe", name, id, err)
			}
		})
	}
	if fromClient && !granted && n.private(name) {
		return ErrPrivateChannel
	}
	return n.admit(c, name, since, id)
}

// admit subscribes c to name once every check but the count passed.
func (n *Node) admit(c *server.Conn, name string, since *Position, id json.RawMessage) error {
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
			replySubscribeError(c, name, id, err)
		}
	})
	if !deferred {
		n.pending.add(c, -1)
	}
	return deferred
}

// replySubscribeError tells c why a subscribe that could not be refused
// at once failed.
func replySubscribeError(c *server.Conn, name string, id json.RawMessage, err error) {
	_ = c.SendPrepared(replyFrame(reply{Type: "error", Op: "subscribe", Channel: name, ID: id, Reason: reasonOf(err)}))
}

// join subscribes c, checks done: under the channel's lock it queues the
// reply and what c missed, then joins the hub; or, on a channel whose
// broker route is not live yet, waits for it (routing.go).
func (n *Node) join(c *server.Conn, name string, since *Position, id json.RawMessage) error {
	ch, err := n.lockChannel(name, c)
	if err != nil {
		return err
	}
	defer ch.mu.Unlock()
	if !ch.live {
		return n.awaitRoute(ch, c, since, id)
	}
	return n.joinLocked(ch, c, since, id, false)
}

// joinLocked is join with ch.mu held and ch live; paced when a replay's
// turn of MaxReplayRate was given already (replayTurn).
func (n *Node) joinLocked(ch *channel, c *server.Conn, since *Position, id json.RawMessage, paced bool) error {
	if since != nil && slices.Contains(c.Hubs(), ch.hub) {
		// Joined already: c has had every message since, and replaying
		// history on every such request would turn a few bytes in into
		// megabytes out.
		since = nil
	}
	giveBack := func() {}
	if since != nil { // a broker read and maybe half a send queue out
		var err error
		if giveBack, err = n.replays.reserve(c); err != nil {
			return err
		}
		if !paced && n.replayed != nil && !n.replayed.Allow() {
			giveBack()
			return n.queueReplay(ch, c, since, id)
		}
	}
	top, kept, err := n.position(ch, since)
	if err != nil || len(kept) == 0 {
		giveBack()
	}
	if err != nil {
		return err
	}
	frames := []*frame.Prepared{replyFrame(reply{Type: "subscribed", Channel: ch.name, Epoch: top.Epoch, Offset: &top.Offset, ID: id})}
	if since != nil {
		frames = n.replay(ch.name, *since, top, kept, frames)
	}
	// Queue the reply and the recovered messages before joining: a hub
	// flush can deliver a frame published before the join as soon as c is
	// a member, and it must not overtake them.
	if err := c.SendPrepared(frames...); err != nil {
		return err
	}
	if err := ch.hub.Join(c); err != nil {
		return err
	}
	n.presenceJoin(c, ch)
	return nil
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
		if from := replayFrom(*since, top); from != after {
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

// Unsubscribe removes c from channel.
func (n *Node) Unsubscribe(c *server.Conn, channel string) {
	n.chans.mu.RLock()
	ch := n.chans.m[channel]
	n.chans.mu.RUnlock()
	if ch != nil {
		ch.hub.Leave(c)
		n.stopAwaiting(ch, c)
	}
	n.presenceLeave(c, channel)
}
