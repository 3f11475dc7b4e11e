package frame

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// bits turns a fixture written as spaced bits with labelled fields into
// bytes, as in
//
//	1 000 0001 [fin rsv text] | 1 0000101 [mask len=5] | "hello"
//
// Spaces, '|' and [labels] are ignored; "text" in double quotes stands for
// its bytes and must start on a byte boundary. A malformed fixture is a bug
// in the table, so it panics.
func bits(s string) []byte {
	var out []byte
	var cur byte
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '|', '\n', '\t':
		case '[':
			i += strings.IndexByte(s[i:], ']')
		case '"':
			if n != 0 {
				panic("bits: quoted text off a byte boundary in " + s)
			}
			end := strings.IndexByte(s[i+1:], '"')
			out = append(out, s[i+1:i+1+end]...)
			i += end + 1
		case '0', '1':
			cur = cur<<1 | (c - '0')
			if n++; n == 8 {
				out = append(out, cur)
				cur, n = 0, 0
			}
		default:
			panic("bits: bad character " + string(c) + " in " + s)
		}
	}
	if n != 0 {
		panic("bits: trailing bits in " + s)
	}
	return out
}

// hexb is bits for hex fixtures: "81 [fin text] 85 [mask len=5] 37fa213d".
func hexb(s string) []byte {
	var clean strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '|', '\n', '\t':
		case '[':
			i += strings.IndexByte(s[i:], ']')
		default:
			clean.WriteByte(c)
		}
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		panic("hexb: " + err.Error())
	}
	return b
}

// cat joins fixture parts.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// rep is n copies of c.
func rep(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

var testKey = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

// clientFrame is a masked client frame with testKey.
func clientFrame(fin bool, op OpCode, payload []byte) []byte {
	b := AppendClientHeader(nil, fin, op, len(payload), testKey)
	n := len(b)
	b = append(b, payload...)
	Mask(b[n:], testKey, 0)
	return b
}

// parseAll feeds stream to p in pieces of the sizes chunks returns (nil:
// one piece) and collects the messages, copied, and the first error. It
// reports a call that neither progressed nor returned a message as an
// error, since the caller's loop would spin.
func parseAll(p *Parser, stream []byte, chunks func() int) ([]Message, error) {
	var out []Message
	for len(stream) > 0 {
		k := len(stream)
		if chunks != nil {
			k = min(max(1, chunks()), len(stream))
		}
		data := stream[:k]
		stream = stream[k:]
		for len(data) > 0 {
			m, n, err := p.Parse(data)
			if n < 0 || n > len(data) {
				return out, errBadN
			}
			data = data[n:]
			if err == nil {
				err = p.Inflate(&m) // what a DeferInflate Parser's caller does
			}
			if err != nil {
				return out, err
			}
			if m.Op != 0 {
				out = append(out, Message{Op: m.Op, Payload: bytes.Clone(m.Payload)})
			} else if n == 0 {
				return out, errNoProgress
			}
		}
	}
	return out, nil
}

var (
	errNoProgress = &testError{"Parse made no progress"}
	errBadN       = &testError{"Parse returned n out of range"}
)

type testError struct{ s string }

func (e *testError) Error() string { return e.s }

// sameMessages reports the first difference between two message lists.
func sameMessages(got, want []Message) (int, bool) {
	for i := range min(len(got), len(want)) {
		if got[i].Op != want[i].Op || !bytes.Equal(got[i].Payload, want[i].Payload) {
			return i, false
		}
	}
	return min(len(got), len(want)), len(got) == len(want)
}
