package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// bits turns a spaced bit string with labelled fields, as in
// "1 000 0001 | 1 0000010 | mask...", into bytes. Spaces, '|' and labels in
// brackets are ignored.
func bits(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	var cur byte
	n := 0
	skip := false
	for _, r := range s {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case skip || r == ' ' || r == '|' || r == '\n' || r == '\t':
		case r == '0' || r == '1':
			cur = cur<<1 | byte(r-'0')
			n++
			if n == 8 {
				out = append(out, cur)
				cur, n = 0, 0
			}
		default:
			t.Fatalf("bad bit string rune %q", r)
		}
	}
	if n != 0 {
		t.Fatalf("bit string is %d bits past a byte", n)
	}
	return out
}

func clientFrame(fin bool, op OpCode, payload []byte) []byte {
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	b := AppendClientHeader(nil, fin, op, len(payload), key)
	n := len(b)
	b = append(b, payload...)
	Mask(b[n:], key, 0)
	return b
}

// parseAll feeds stream in the given chunk sizes (0: one shot) and collects
// messages (copied) and the first error.
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
			data = data[n:]
			if err != nil {
				return out, err
			}
			if m.Op != 0 {
				out = append(out, Message{Op: m.Op, Payload: bytes.Clone(m.Payload)})
			}
			if n == 0 && m.Op == 0 {
				panic("no progress")
			}
		}
	}
	return out, nil
}

func TestParser_Fixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		max  int
		op   OpCode
		want string
		err  error
	}{
		{name: "masked hello", in: "1 000 0001 [fin rsv text] | 1 0000101 [mask len=5] | 00000000 00000000 00000000 00000000 [key 0] | 01101000 01100101 01101100 01101100 01101111 [hello]", op: OpText, want: "hello"},
		{name: "unmasked client frame", in: "1 000 0001 | 0 0000001 | 01101000", err: ErrUnmasked},
		{name: "rsv1", in: "1 100 0001 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrReservedBits},
		{name: "rsv3", in: "1 001 0010 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrReservedBits},
		{name: "opcode 3", in: "1 000 0011 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrReservedOpCode},
		{name: "opcode 0xB", in: "1 000 1011 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrReservedOpCode},
		{name: "fragmented ping", in: "0 000 1001 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrControlFragmented},
		{name: "ping 126", in: "1 000 1001 | 1 1111110 | 00000000 01111110 [len16=126] | 00000000 00000000 00000000 00000000", err: ErrControlTooLong},
		{name: "lone continuation", in: "1 000 0000 | 1 0000000 | 00000000 00000000 00000000 00000000", err: ErrUnexpectedContinuation},
		{name: "64-bit length msb", in: "1 000 0010 | 1 1111111 | 10000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 | 00000000 00000000 00000000 00000000", err: ErrLengthMSB},
		{name: "16-bit length over limit", max: 1000, in: "1 000 0010 | 1 1111110 | 00000011 11101001 [1001] | 00000000 00000000 00000000 00000000", err: ErrMessageTooBig},
		{name: "64-bit length over default limit", in: "1 000 0010 | 1 1111111 | 00000000 00000000 00000000 00000000 00000000 00010000 00000000 00000001 | 00000000 00000000 00000000 00000000", err: ErrMessageTooBig},
		{name: "close one byte", in: "1 000 1000 | 1 0000001 | 00000000 00000000 00000000 00000000 | 00000011", err: ErrCloseLength},
		{name: "close 1005 on wire", in: "1 000 1000 | 1 0000010 | 00000000 00000000 00000000 00000000 | 00000011 11101101", err: ErrInvalidCloseCode},
		{name: "close 1000", in: "1 000 1000 | 1 0000010 | 00000000 00000000 00000000 00000000 | 00000011 11101000", op: OpClose, want: "\x03\xe8"},
		{name: "invalid utf8 text", in: "1 000 0001 | 1 0000001 | 00000000 00000000 00000000 00000000 | 11111111", err: ErrInvalidUTF8},
		{name: "truncated utf8 at end", in: "1 000 0001 | 1 0000001 | 00000000 00000000 00000000 00000000 | 11000011", err: ErrInvalidUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Parser{MaxMessageBytes: tc.max}
			msgs, err := parseAll(p, bits(t, tc.in), nil)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Code == 0 {
					t.Fatalf("error %v carries no close code", err)
				}
				return
			}
			if len(msgs) != 1 || msgs[0].Op != tc.op || string(msgs[0].Payload) != tc.want {
				t.Fatalf("got %+v, want %v %q", msgs, tc.op, tc.want)
			}
		})
	}
}

func TestParser_LengthEncodings(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 100000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		f := clientFrame(true, OpBinary, payload)
		wantHeader := 2 + 4
		switch {
		case n > 65535:
			wantHeader += 8
		case n > 125:
			wantHeader += 2
		}
		if len(f)-n != wantHeader {
			t.Fatalf("len %d: header %d bytes, want %d", n, len(f)-n, wantHeader)
		}
		msgs, err := parseAll(&Parser{}, f, nil)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Payload, payload) {
			t.Fatalf("len %d: %v, %d messages", n, err, len(msgs))
		}
	}
}

// stream builds a mix of fragmented, interleaved and plain messages.
func stream(r *rand.Rand) ([]byte, []Message) {
	var b []byte
	var want []Message
	for range 30 {
		switch r.IntN(4) {
		case 0:
			p := bytes.Repeat([]byte("é"), r.IntN(3000))
			b = append(b, clientFrame(true, OpText, p)...)
			want = append(want, Message{OpText, p})
		case 1:
			p := make([]byte, r.IntN(70000))
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			b = append(b, clientFrame(true, OpBinary, p)...)
			want = append(want, Message{OpBinary, p})
		case 2:
			whole := []byte("κόσμε fragmented €𝄞 text")
			cut1, cut2 := r.IntN(len(whole)), 0
			cut2 = cut1 + r.IntN(len(whole)-cut1)
			b = append(b, clientFrame(false, OpText, whole[:cut1])...)
			b = append(b, clientFrame(true, OpPing, []byte("mid"))...)
			want = append(want, Message{OpPing, []byte("mid")})
			b = append(b, clientFrame(false, OpContinuation, whole[cut1:cut2])...)
			b = append(b, clientFrame(true, OpContinuation, whole[cut2:])...)
			want = append(want, Message{OpText, whole})
		case 3:
			b = append(b, clientFrame(true, OpPong, []byte{1, 2, 3})...)
			want = append(want, Message{OpPong, []byte{1, 2, 3}})
		}
	}
	return b, want
}

func TestParser_SplitInput(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	s, want := stream(r)
	for _, tc := range []struct {
		name   string
		chunks func() int
	}{
		{"one shot", nil},
		{"1 byte", func() int { return 1 }},
		{"7 bytes", func() int { return 7 }},
		{"random", func() int { return 1 + r.IntN(5000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Parser{}
			got, err := parseAll(p, bytes.Clone(s), tc.chunks)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d messages, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].Op != want[i].Op || !bytes.Equal(got[i].Payload, want[i].Payload) {
					t.Fatalf("message %d: %v len %d, want %v len %d", i, got[i].Op, len(got[i].Payload), want[i].Op, len(want[i].Payload))
				}
			}
			p.Parse(nil) // recycle the last message's buffer
			if !p.Idle() {
				t.Fatal("parser holds state or a buffer between messages")
			}
		})
	}
}

// Invalid UTF-8 fails at the first bad byte, before the frame completes.
func TestParser_UTF8FailFast(t *testing.T) {
	t.Parallel()
	f := clientFrame(true, OpText, []byte("ok \xce\xba\xf4\x90 and much more text that is never needed"))
	p := &Parser{}
	// Feed the header plus "ok \xce\xba\xf4\x90" only.
	hdr := len(f) - len("ok \xce\xba\xf4\x90 and much more text that is never needed")
	_, _, err := p.Parse(f[:hdr+8])
	if !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("err %v, want ErrInvalidUTF8 before the frame completes", err)
	}
}

func TestParser_ClientSide(t *testing.T) {
	t.Parallel()
	p := &Parser{Role: ClientSide}
	msgs, err := parseAll(p, AppendFrame(nil, OpText, []byte("from server")), nil)
	if err != nil || len(msgs) != 1 || string(msgs[0].Payload) != "from server" {
		t.Fatalf("%v %+v", err, msgs)
	}
	if _, err := parseAll(&Parser{Role: ClientSide}, clientFrame(true, OpText, nil), nil); !errors.Is(err, ErrMasked) {
		t.Fatalf("masked server frame: %v", err)
	}
}

func TestParser_ZeroAllocs(t *testing.T) {
	f := clientFrame(true, OpText, []byte(strings.Repeat("a", 1000)))
	buf := make([]byte, len(f))
	p := &Parser{}
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, f)
		if m, _, err := p.Parse(buf); err != nil || m.Op != OpText {
			panic("parse failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per unfragmented message, want 0", allocs)
	}
	split := testing.AllocsPerRun(1000, func() {
		copy(buf, f)
		p.Parse(buf[:500])
		if m, _, err := p.Parse(buf[500:]); err != nil || m.Op != OpText {
			panic("parse failed")
		}
	})
	if split != 0 {
		t.Fatalf("%v allocs per split message with a warm pool, want 0", split)
	}
}

func TestParser_ErrorIsSticky(t *testing.T) {
	t.Parallel()
	p := &Parser{}
	if _, err := parseAll(p, []byte{0x81, 0x00}, nil); !errors.Is(err, ErrUnmasked) {
		t.Fatal(err)
	}
	if _, _, err := p.Parse(clientFrame(true, OpText, nil)); !errors.Is(err, ErrUnmasked) {
		t.Fatalf("after an error: %v", err)
	}
	p.Reset()
	if _, err := parseAll(p, clientFrame(true, OpText, []byte("x")), nil); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
}

func BenchmarkParser(b *testing.B) {
	for _, size := range []int{32, 1024, 16384} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			f := clientFrame(true, OpBinary, make([]byte, size))
			buf := make([]byte, len(f))
			p := &Parser{}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				copy(buf, f)
				if _, _, err := p.Parse(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParserSplit(b *testing.B) {
	f := clientFrame(true, OpText, bytes.Repeat([]byte("a"), 4096))
	buf := make([]byte, len(f))
	p := &Parser{}
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		copy(buf, f)
		for data := buf; len(data) > 0; {
			_, n, err := p.Parse(data[:min(1000, len(data))])
			if err != nil {
				b.Fatal(err)
			}
			data = data[n:]
		}
	}
}
