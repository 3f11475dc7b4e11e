package frame

import (
	"bytes"
	"testing"
)

// FuzzInflate feeds arbitrary bytes to the inflate path as the payload of a
// compressed message: it must never panic, never return more than the
// limit, and agree with compress/flate on what the bytes inflate to. The
// same bytes, compressed as a Prepared frame and parsed back by a Parser
// with Deflate, must come out unchanged. Seeds live in
// testdata/fuzz/FuzzInflate.
func FuzzInflate(f *testing.F) {
	f.Add(stdDeflate([]byte("hello")))
	f.Add(stdDeflate(tickJSON(1024)))
	f.Add(stdDeflate(make([]byte, 1<<16)))
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff})
	d := &Deflater{Level: 1}
	f.Fuzz(func(t *testing.T, z []byte) {
		const limit = 1 << 12
		out, err := inflate(z, limit)
		want, stdErr := stdInflate(z, limit)
		switch {
		case err != nil && err != ErrBadDeflate && err != ErrInflatedTooBig:
			t.Fatalf("inflate: unexpected error %v", err)
		case err == nil && len(*out) > limit:
			t.Fatalf("inflated %d bytes past the limit", len(*out))
		case err == nil && (stdErr != nil || !bytes.Equal(*out, want)):
			t.Fatalf("inflated %d bytes, compress/flate %d: %v", len(*out), len(want), stdErr)
		case err != nil && stdErr == nil:
			t.Fatalf("inflate: %v, compress/flate inflates it to %d bytes", err, len(want))
		}
		if out != nil {
			putBuf(out)
		}

		p := NewPrepared(OpBinary, z)
		cp := &Parser{Role: ClientSide, MaxMessageBytes: 1 << 20, Deflate: true}
		msgs, perr := parseAll(cp, bytes.Clone(p.Compressed(d)), nil)
		if perr != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Payload, z) {
			t.Fatalf("round trip of %d bytes: %d messages, %v", len(z), len(msgs), perr)
		}
	})
}
