package pubsub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
)

// The control protocol lets a client manage channels over its own
// connection with JSON text messages:
//
//	{"op":"subscribe","channel":"a","since":12,"epoch":"e","id":1}
//	{"op":"subscribe","channel":"private:a","token":"<jwt>","id":8}
//	{"op":"unsubscribe","channel":"a","id":2}
//	{"op":"publish","channel":"a","data":{"any":"JSON"},"id":3}
//	{"op":"presence","channel":"room:1","id":4}
//	{"op":"presence_stats","channel":"room:1","id":5}
//	{"op":"rpc","method":"m","data":{"any":"JSON"},"id":6}
//	{"op":"refresh","token":"<jwt>","id":7}
//
// since, epoch, token (a channel token, auth.go) and id are optional; id (an integer) is echoed in the reply.
// Replies are {"type":"subscribed"|"unsubscribed"|"published"|"presence"|
// "presence_stats"|"rpc"|"refreshed"|"error",...}; an error carries a
// reason and never closes the connection. With backend hooks (proxy.go) a
// subscribe, publish or rpc is answered once the backend has, so replies
// may come in another order than their requests: match them by id.

var errNotControl = errors.New(`expected a JSON control message: {"op":"subscribe|unsubscribe|publish|presence|presence_stats|rpc|refresh","channel":...}`)

// control is one parsed control message.
type control struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Since   *uint64         `json:"since"`
	Epoch   string          `json:"epoch"`
	Method  string          `json:"method"`
	Token   string          `json:"token"`
	ID      json.RawMessage `json:"id"`
}

// IsControl reports whether a text message looks like a control message: a
// JSON object with an "op" key. It does not parse; HandleControl does.
func IsControl(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && bytes.Contains(t, []byte(`"op"`))
}

// HandleControl runs one control message from c and answers it with an ack,
// or with {"type":"error","reason":...} for anything else: a binary or
// non-JSON message, an unknown op or field, a bad channel name, a refusal.
// Call it from Config.OnMessage; it runs on c's worker and never blocks.
func (n *Node) HandleControl(c *server.Conn, op frame.OpCode, data []byte) {
	var m control
	if err := parseControl(op, data, &m); err != nil {
		n.stats.controlErrors.Add(1)
		_ = c.SendPrepared(replyFrame(reply{Type: "error", Op: m.Op, Channel: m.Channel, ID: m.ID, Reason: reasonOf(err)}))
		return
	}
	var err error
	ack := reply{Op: m.Op, Channel: m.Channel, ID: m.ID}
	switch m.Op {
	case "subscribe":
		var since *Position
		if m.Since != nil {
			since = &Position{Offset: *m.Since, Epoch: m.Epoch}
		}
		err = n.subscribe(c, m.Channel, since, m.ID, m.Token, true) // sends its own ack
	case "unsubscribe":
		if err = CheckChannelName(m.Channel); err == nil {
			n.Unsubscribe(c, m.Channel)
			ack.Type = "unsubscribed"
		}
	case "publish":
		if n.backend != nil && n.backend.cfg.PublishURL != "" {
			err = n.publishHook(c, m) // sends its own ack
			break
		}
		var p Publication
		if p, err = n.publishFrom(c, m.Channel, m.Data); err == nil {
			ack = publishedAck(m, p)
		}
	case "presence":
		var members []Member
		if err = n.presenceAllowed(c, m.Channel); err == nil {
			if members, ack.Truncated, err = n.Presence(m.Channel); err == nil {
				ack.Type, ack.Members = "presence", &members
			}
		}
	case "presence_stats":
		var st PresenceStats
		if err = n.presenceAllowed(c, m.Channel); err == nil {
			if st, err = n.PresenceStats(m.Channel); err == nil {
				ack.Type, ack.Clients, ack.Users = "presence_stats", &st.Clients, &st.Users
			}
		}
	case "rpc":
		err = n.rpc(c, m.Method, m.Data, m.ID) // sends its own answer
	case "refresh":
		err = n.refresh(c, m.Token, m.ID) // sends its own ack
	}
	switch {
	case err != nil:
		n.stats.controlErrors.Add(1)
		_ = c.SendPrepared(replyFrame(reply{Type: "error", Op: m.Op, Channel: m.Channel, ID: m.ID, Reason: reasonOf(err)}))
	case ack.Type != "":
		ack.Op = ""
		_ = c.SendPrepared(replyFrame(ack))
	}
}

// parseControl decodes and checks the shape of a control message. On error
// m holds what could be read, so the reply can name the op and id.
func parseControl(op frame.OpCode, data []byte, m *control) error {
	if op != frame.OpText || !IsControl(data) {
		return errNotControl
	}
	if err := decodeStrict(data, m); err != nil {
		if !errors.Is(err, errTrailingJSON) { // m holds the first value
			*m = control{}
		}
		return fmt.Errorf("bad control message: %w", err)
	}
	if len(m.ID) > 0 {
		var id int64
		if json.Unmarshal(m.ID, &id) != nil {
			m.ID = nil
			return errors.New("bad control message: id must be an integer")
		}
	}
	switch m.Op {
	case "subscribe":
		if m.Since == nil && m.Epoch != "" {
			return errors.New("bad control message: epoch without since")
		}
	case "unsubscribe", "presence", "presence_stats":
	case "publish":
		if len(m.Data) == 0 {
			return errors.New(`bad control message: publish needs "data"`)
		}
	case "rpc":
		if m.Method == "" {
			return errors.New(`bad control message: rpc needs "method"`)
		}
	case "refresh":
		if m.Token == "" {
			return errors.New(`bad control message: refresh needs "token"`)
		}
	default:
		return fmt.Errorf("bad control message: unknown op %q; want subscribe, unsubscribe, publish, presence, presence_stats, rpc or refresh", m.Op)
	}
	switch {
	case m.Op != "publish" && m.Op != "rpc" && len(m.Data) > 0:
		return fmt.Errorf(`bad control message: "data" belongs to publish and rpc, not %s`, m.Op)
	case m.Op != "rpc" && m.Method != "":
		return fmt.Errorf(`bad control message: "method" belongs to rpc, not %s`, m.Op)
	case m.Op != "refresh" && m.Op != "subscribe" && m.Token != "":
		return fmt.Errorf(`bad control message: "token" belongs to refresh and subscribe, not %s`, m.Op)
	}
	return nil
}

func publishedAck(m control, p Publication) reply {
	return reply{Type: "published", Channel: m.Channel, ID: m.ID, Offset: &p.Offset, Delivered: &p.Delivered}
}

// presenceAllowed lets c see channel's members if it may subscribe to it;
// a private channel's, only once it has.
func (n *Node) presenceAllowed(c *server.Conn, channel string) error {
	if err := n.checkPresence(channel); err != nil {
		return err
	}
	if n.private(channel) {
		if !n.subscribed(c, channel) {
			return ErrPrivateChannel
		}
		return nil
	}
	if !n.Allowed(c, ActionSubscribe, channel) {
		return ErrForbidden
	}
	if n.cfg.OnSubscribe != nil {
		return n.cfg.OnSubscribe(c, channel)
	}
	return nil
}

// publishFrom publishes a client's message once its token and OnPublish
// allow it.
func (n *Node) publishFrom(c *server.Conn, channel string, data []byte) (Publication, error) {
	if err := n.checkPublishFrom(c, channel, data); err != nil {
		return Publication{}, err
	}
	return n.publishChecked(c, channel, data)
}

// publishHook publishes a client's message once its token, OnPublish and
// then the backend (Proxy.PublishURL) allow it; a result with "data"
// publishes that data instead. The ack or error reaches c later.
func (n *Node) publishHook(c *server.Conn, m control) error {
	if err := n.checkPublishFrom(c, m.Channel, m.Data); err != nil {
		return err
	}
	m.Data = bytes.Clone(m.Data) // data is only valid during OnMessage
	return n.hook(n.backend.cfg.PublishURL, c, backendRequest{Channel: m.Channel, Data: m.Data}, func(res *backendResult, err error) {
		var p Publication
		if err == nil {
			if len(res.Data) > 0 {
				m.Data = res.Data
			}
			p, err = n.publishChecked(c, m.Channel, m.Data)
		}
		if err != nil {
			n.hookRefused(c, "publish", m.Channel, m.ID, err)
			return
		}
		_ = c.SendPrepared(replyFrame(publishedAck(m, p)))
	})
}

func (n *Node) checkPublishFrom(c *server.Conn, channel string, data []byte) error {
	if err := CheckChannelName(channel); err != nil {
		return err
	}
	if !n.Allowed(c, ActionPublish, channel) {
		return ErrForbidden
	}
	if n.cfg.OnPublish != nil {
		return n.cfg.OnPublish(c, channel, data)
	}
	return nil
}

// publishChecked publishes what checkPublishFrom allowed.
func (n *Node) publishChecked(c *server.Conn, channel string, data []byte) (Publication, error) {
	giveBack := func() {}
	if n.localSubscribers(channel) == 0 { // may start a channel
		var err error
		if giveBack, err = n.creators.reserve(c); err != nil {
			return Publication{}, err
		}
	}
	p, err := n.Publish(channel, data)
	if err != nil || p.Offset != 1 {
		giveBack() // no channel started
	}
	return p, err
}

// reasonOf is the text a client sees for err: a RejectError's reason, or
// the message without the package prefix. A broker outage is passing: its
// text ends in a retry-ms hint, as ErrReplaysBusy's does, so that a client
// subscribes again instead of giving the channel up (a node restarted in a
// storm serves clients a moment before its broker is back).
func reasonOf(err error) string {
	var re *server.RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	r := strings.TrimPrefix(strings.TrimPrefix(err.Error(), "pubsub: "), "server: ")
	if errors.Is(err, ErrBrokerUnavailable) {
		r += "; retry-ms=1000"
	}
	return r
}

var errTrailingJSON = errors.New("more than one JSON value")

// decodeStrict decodes exactly one JSON value with no unknown fields: the
// control protocol and the HTTP API read client JSON only through it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailingJSON
	}
	return nil
}
