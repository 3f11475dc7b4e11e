package pubsub

import (
	"encoding/json"
	"strconv"

	"github.com/fanout-ws/fanout/frame"
)

// Wire format: what the server sends on the channel protocol, each
// serialized once: message envelopes (by hand, for every publication) and
// replies (acks, errors, gap notices; encoding/json, they are rare).

// reply is every JSON message the server sends on its own: acks, errors,
// gap notices and presence. Rare, so encoding/json is fine here.
type reply struct {
	Type      string          `json:"type"`
	Op        string          `json:"op,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Offset    *uint64         `json:"offset,omitempty"`
	Since     *uint64         `json:"since,omitempty"`
	First     *uint64         `json:"first,omitempty"`
	Delivered *int            `json:"delivered,omitempty"`
	Code      int             `json:"code,omitempty"` // a backend's error code
	Reason    string          `json:"reason,omitempty"`
	In        *int64          `json:"in,omitempty"`        // expiring: seconds left
	Expires   *int64          `json:"expires,omitempty"`   // refreshed: Unix seconds, 0 for never
	Member    *Member         `json:"member,omitempty"`    // join and leave events
	Members   *[]Member       `json:"members,omitempty"`   // presence
	Truncated bool            `json:"truncated,omitempty"` // presence: more members than it holds
	Clients   *int            `json:"clients,omitempty"`   // presence_stats
	Users     *int            `json:"users,omitempty"`     // presence_stats
	ID        json.RawMessage `json:"id,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"` // rpc: the backend's answer
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
