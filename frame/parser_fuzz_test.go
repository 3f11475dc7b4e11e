package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// FuzzParser feeds arbitrary bytes in fuzzer-chosen chunks. The parser must
// never panic, must respect MaxMessageBytes, and must give the same messages
// and error as a one-shot parse.
func FuzzParser(f *testing.F) {
	f.Add(clientFrame(true, OpText, []byte("hello")), uint64(1))
	f.Add(append(clientFrame(false, OpText, []byte("fr")), append(clientFrame(true, OpPing, []byte("p")), clientFrame(true, OpContinuation, []byte("ag"))...)...), uint64(7))
	f.Add(clientFrame(true, OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}), uint64(3))
	f.Add(clientFrame(true, OpBinary, make([]byte, 300)), uint64(11))
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, uint64(2))
	f.Add(clientFrame(true, OpText, []byte("\xce\xba\xf4\x90")), uint64(5))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		const limit = 1 << 12
		one, oneErr := parseAll(&Parser{MaxMessageBytes: limit}, bytes.Clone(stream), nil)
		r := rand.New(rand.NewPCG(seed, seed>>1))
		split, splitErr := parseAll(&Parser{MaxMessageBytes: limit}, bytes.Clone(stream), func() int { return 1 + r.IntN(64) })
		var a, b *ProtocolError
		if (oneErr == nil) != (splitErr == nil) || (oneErr != nil && (!errors.As(oneErr, &a) || !errors.As(splitErr, &b) || a.Code != b.Code)) {
			t.Fatalf("one-shot error %v, split error %v", oneErr, splitErr)
		}
		if len(one) != len(split) {
			t.Fatalf("one-shot %d messages, split %d", len(one), len(split))
		}
		for i := range one {
			if one[i].Op != split[i].Op || !bytes.Equal(one[i].Payload, split[i].Payload) {
				t.Fatalf("message %d differs", i)
			}
			if !one[i].Op.IsControl() && len(one[i].Payload) > limit {
				t.Fatalf("message %d of %d bytes passes the limit", i, len(one[i].Payload))
			}
		}
	})
}
