package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// FuzzParser feeds arbitrary bytes in chunks chosen by the fuzzer through
// seed (NATS FuzzParser): a one-shot parse, a chunked one and, for short
// inputs, a byte-at-a-time one must give the same messages and the same
// error, never panic, and deliver only messages within the limits. The top
// bit of seed picks the Role, the next one Deflate (RSV1 messages
// inflated). Seeds live in testdata/fuzz/FuzzParser.
func FuzzParser(f *testing.F) {
	f.Add(clientFrame(true, OpText, []byte("hello")), uint64(1))
	f.Add(cat(clientFrame(false, OpText, []byte("fr")), clientFrame(true, OpPing, []byte("p")), clientFrame(true, OpContinuation, []byte("ag"))), uint64(7))
	f.Add(clientFrame(true, OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}), uint64(3))
	f.Add(clientFrame(true, OpBinary, make([]byte, 300)), uint64(11))
	f.Add(AppendFrame(nil, OpText, []byte("server")), uint64(1)<<63|5)
	f.Add(compressedClientFrame(true, OpText, stdDeflate([]byte("zipped zipped zipped"))), uint64(1)<<62|3)
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		const limit = 1 << 12
		role, deflate := Role(seed>>63), seed>>62&1 != 0
		newParser := func() *Parser { return &Parser{Role: role, MaxMessageBytes: limit, Deflate: deflate} }

		p1 := newParser()
		one, oneErr := parseAll(p1, bytes.Clone(stream), nil)
		r := rand.New(rand.NewPCG(seed, seed>>7))
		p2 := newParser()
		split, splitErr := parseAll(p2, bytes.Clone(stream), func() int { return 1 + r.IntN(1+int(seed%97)) })
		check := func(what string, p *Parser, got []Message, err error) {
			t.Helper()
			var te *testError
			if errors.As(err, &te) {
				t.Fatalf("%s: %v", what, err)
			}
			if err != oneErr { // the same sentinel, so the same close code
				t.Fatalf("%s: error %v, one-shot %v", what, err, oneErr)
			}
			if i, ok := sameMessages(got, one); !ok {
				t.Fatalf("%s: %d messages, one-shot %d; first difference at %d", what, len(got), len(one), i)
			}
			p.Parse(nil)
			p1.Parse(nil)
			if p.Idle() != p1.Idle() {
				t.Fatalf("%s: Idle %v, one-shot %v", what, p.Idle(), p1.Idle())
			}
		}
		check("chunked", p2, split, splitErr)
		if len(stream) <= 1<<12 {
			p3 := newParser()
			bytewise, bytewiseErr := parseAll(p3, bytes.Clone(stream), func() int { return 1 })
			check("byte at a time", p3, bytewise, bytewiseErr)
		}
		if oneErr != nil {
			var pe *ProtocolError
			if !errors.As(oneErr, &pe) || !pe.Code.ValidOnWire() {
				t.Fatalf("error %v carries no close code to send", oneErr)
			}
		}
		for i, m := range one {
			switch {
			case m.Op == OpText || m.Op == OpBinary:
				if len(m.Payload) > limit {
					t.Fatalf("message %d of %d bytes passes the limit", i, len(m.Payload))
				}
				if m.Op == OpText && !utf8.Valid(m.Payload) {
					t.Fatalf("message %d: text is not UTF-8", i)
				}
			case m.Op == OpClose || m.Op == OpPing || m.Op == OpPong:
				if len(m.Payload) > MaxControlPayload {
					t.Fatalf("control frame %d of %d bytes", i, len(m.Payload))
				}
				if _, _, err := ParseClosePayload(m.Payload); m.Op == OpClose && err != nil {
					t.Fatalf("close %d: %v", i, err)
				}
			default:
				t.Fatalf("message %d with opcode %v", i, m.Op)
			}
		}
	})
}
