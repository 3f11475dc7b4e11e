package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Channel mode (Config.Channels > 0) speaks the channels protocol
// (spec/channels.md): subscriber i connects to /ws?channel=<prefix><i mod K>,
// publishers send {"channel":..,"data":..} through the HTTP API or
// {"op":"publish",..} over a WebSocket, and subscribers receive
// {"type":"message","channel":..,"offset":N,"data":<as published>}.
//
// The published data is a flat JSON object carrying the send time in unix
// microseconds (exact even if a server round-trips numbers through float64),
// the channel's sequence number and padding up to Config.Size bytes:
//
//	{"t":1764553200000000,"s":42,"p":"xxxxxxxx"}
//
// Each channel has exactly one publisher, so its sequence numbers must
// arrive in order and without gaps at every subscriber of that channel.

// MinChannelData is the smallest Config.Size in channel mode: the data
// object with a 16-digit time and a 7-digit sequence and no padding.
const MinChannelData = 48

// channelNameChars are the bytes a channel name may hold (spec: 1-128 bytes).
const channelNameChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/="

func (c Config) validateChannels() []error {
	var errs []error
	if c.Channels < 0 {
		errs = append(errs, fmt.Errorf("bench: Channels (%d) must not be negative", c.Channels))
	}
	if c.Channels == 0 {
		if c.PublishURL != "" {
			errs = append(errs, errors.New("bench: PublishURL needs Channels of at least 1"))
		}
		if c.Batch > 1 {
			errs = append(errs, fmt.Errorf("bench: Batch (%d) needs PublishURL", c.Batch))
		}
		return errs
	}
	if c.Scenario != ScenarioBroadcast {
		errs = append(errs, fmt.Errorf("bench: Channels works with the broadcast scenario only (got %s)", c.Scenario))
	}
	if u := len(c.URLs); u > 1 && c.Channels%u != 0 && !c.Joined {
		// Subscriber i is on URL i mod u and channel i mod Channels: channel
		// c's subscribers are all on URL c mod u (servers joined by a broker).
		errs = append(errs, fmt.Errorf("bench: Channels (%d) must be a multiple of the target URLs (%d), so that each channel's subscribers are on one server (or Joined)", c.Channels, u))
	}
	if c.Size < MinChannelData {
		errs = append(errs, fmt.Errorf("bench: Size (%d) must be at least %d with Channels (the data object with time and sequence)", c.Size, MinChannelData))
	}
	if c.Publishers > c.Channels {
		errs = append(errs, fmt.Errorf("bench: Publishers (%d) exceeds Channels (%d): each channel has one publisher", c.Publishers, c.Channels))
	}
	if c.Batch > 1 && c.PublishURL == "" {
		errs = append(errs, fmt.Errorf("bench: Batch (%d) needs PublishURL (WebSocket publish has no batch form)", c.Batch))
	}
	if strings.Trim(c.ChannelPrefix, channelNameChars) != "" {
		errs = append(errs, fmt.Errorf("bench: ChannelPrefix %q: only %s allowed", c.ChannelPrefix, channelNameChars))
	}
	if n := len(c.ChannelPrefix) + len(strconv.Itoa(c.Channels-1)); n > 128 {
		errs = append(errs, fmt.Errorf("bench: channel names would be %d bytes, more than 128", n))
	}
	if c.PublishURL != "" {
		if u, err := url.Parse(c.PublishURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("bench: PublishURL %q is not an http(s) URL", c.PublishURL))
		}
	}
	return errs
}

// channelName is channel ch's name.
func (c Config) channelName(ch int) string { return c.ChannelPrefix + strconv.Itoa(ch) }

// subscriberURL is where connection idx subscribes: its target URL, plus
// its channel in channel mode.
func (c Config) subscriberURL(idx int) string {
	u := c.URLs[idx%len(c.URLs)]
	if c.Channels == 0 {
		return u
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "channel=" + c.channelName(idx%c.Channels)
}

// appendData appends the published data object: send time (unix µs),
// sequence, and padding so the object is size bytes when it fits.
func appendData(dst []byte, sentUS int64, seq uint64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sentUS, 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"p":"`...)
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// appendPublish appends one API publish object {"channel":..,"data":..}.
func appendPublish(dst []byte, channel string, sentUS int64, seq uint64, size int) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":`...)
	dst = appendData(dst, sentUS, seq, size)
	return append(dst, '}')
}

// appendPublishOp appends a WebSocket publish control message.
func appendPublishOp(dst []byte, channel string, sentUS int64, seq uint64, size int) []byte {
	dst = append(dst, `{"op":"publish","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":`...)
	dst = appendData(dst, sentUS, seq, size)
	return append(dst, '}')
}

// envelope is what a subscriber checks in a channel message.
type envelope struct {
	channel []byte // aliases the frame payload
	offset  uint64
	sentUS  int64
	seq     uint64
}

// envelopeKind says what parseEnvelope found.
type envelopeKind int

const (
	envMessage   envelopeKind = iota // a "message" with our data object
	envOther                         // another type (subscribed, error, ...): not a delivery
	envMalformed                     // a message the generator cannot read
)

// parseEnvelope reads a server frame without encoding/json: it is on the
// subscribers' hot path (one call per delivery; BenchmarkParseEnvelope
// measures it against encoding/json). It accepts any key order and
// whitespace around colons, but expects the data object written by
// appendData (flat, no nested braces, no escapes in the strings read).
func parseEnvelope(b []byte) (envelope, envelopeKind) {
	var e envelope
	d, ok := jsonField(b, "data")
	if !ok {
		if t, ok := jsonString(b, "type"); ok && string(t) != "message" {
			return e, envOther
		}
		return e, envMalformed
	}
	if len(d) == 0 || d[0] != '{' {
		return e, envMalformed
	}
	end := bytes.IndexByte(d, '}')
	if end < 0 || bytes.IndexByte(d[1:end], '{') >= 0 { // ours is flat
		return e, envMalformed
	}
	data := d[:end+1]
	head, tail := b[:len(b)-len(d)], d[end+1:] // the envelope without its data
	t, ok := jsonString(head, "type")
	if !ok {
		t, ok = jsonString(tail, "type")
	}
	if !ok {
		return e, envMalformed
	}
	if string(t) != "message" {
		return e, envOther
	}
	if e.channel, ok = jsonString(head, "channel"); !ok {
		if e.channel, ok = jsonString(tail, "channel"); !ok {
			return e, envMalformed
		}
	}
	if e.offset, ok = jsonUint(head, "offset"); !ok {
		if e.offset, ok = jsonUint(tail, "offset"); !ok {
			return e, envMalformed
		}
	}
	us, ok1 := jsonUint(data, "t")
	seq, ok2 := jsonUint(data, "s")
	if !ok1 || !ok2 {
		return e, envMalformed
	}
	e.sentUS, e.seq = int64(us), seq
	return e, envMessage
}

// jsonField returns what follows `"key":` (whitespace skipped) in b: the
// first occurrence of the quoted key that is followed by a colon, so a
// string value equal to the key is not mistaken for it.
func jsonField(b []byte, key string) ([]byte, bool) {
	for rest := b; ; {
		i := bytes.Index(rest, []byte(`"`+key+`"`))
		if i < 0 {
			return nil, false
		}
		rest = rest[i+len(key)+2:]
		v := skipSpace(rest)
		if len(v) > 0 && v[0] == ':' {
			return skipSpace(v[1:]), true
		}
	}
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// jsonString reads the string value of key (no escapes expected).
func jsonString(b []byte, key string) ([]byte, bool) {
	v, ok := jsonField(b, key)
	if !ok || len(v) == 0 || v[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(v[1:], '"')
	if end < 0 || bytes.IndexByte(v[1:1+end], '\\') >= 0 {
		return nil, false
	}
	return v[1 : 1+end], true
}

// jsonUint reads the non-negative integer value of key.
func jsonUint(b []byte, key string) (uint64, bool) {
	v, ok := jsonField(b, key)
	if !ok {
		return 0, false
	}
	var n uint64
	i := 0
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9' && i < 19; i++ {
		n = n*10 + uint64(v[i]-'0')
	}
	if i == 0 || (i < len(v) && (v[i] == '.' || v[i] == 'e' || v[i] == 'E' || (v[i] >= '0' && v[i] <= '9'))) {
		return 0, false
	}
	return n, true
}

// channelIs reports whether name is prefix followed by ch in decimal,
// without allocating.
func channelIs(name []byte, prefix string, ch int) bool {
	if len(name) <= len(prefix) || string(name[:len(prefix)]) != prefix {
		return false
	}
	var buf [20]byte
	return string(name[len(prefix):]) == string(strconv.AppendInt(buf[:0], int64(ch), 10))
}
