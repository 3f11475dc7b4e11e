package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"
)

// Fixture pieces. Client frames in fixtures use the all-zero masking key,
// which leaves the payload readable; the RFC 6455 section 5.7 examples use
// a real one.
const key0 = " | 00000000 00000000 00000000 00000000 [key=0] | "

func msg(op OpCode, payload string) Message { return Message{Op: op, Payload: []byte(payload)} }

type parserFixture struct {
	name string
	role Role
	max  int
	in   []byte
	want []Message // messages delivered, before the error if any
	err  error
}

func parserFixtures() []parserFixture {
	fx := []parserFixture{
		// RFC 6455 section 5.7 examples.
		{
			name: "rfc masked text", in: hexb("81 [fin text] 85 [mask len=5] 37fa213d [key] 7f9f4d5158 [Hello masked]"),
			want: []Message{msg(OpText, "Hello")},
		},
		{
			name: "rfc unmasked text", role: ClientSide, in: hexb("81 05 48656c6c6f"),
			want: []Message{msg(OpText, "Hello")},
		},
		{
			name: "rfc fragmented unmasked text", role: ClientSide, in: hexb("01 [text] 03 48656c [Hel] | 80 [fin cont] 02 6c6f [lo]"),
			want: []Message{msg(OpText, "Hello")},
		},
		{
			name: "rfc unmasked ping", role: ClientSide, in: hexb("89 05 48656c6c6f"),
			want: []Message{msg(OpPing, "Hello")},
		},
		{
			name: "rfc masked pong", in: hexb("8a 85 37fa213d 7f9f4d5158"),
			want: []Message{msg(OpPong, "Hello")},
		},
		{
			name: "rfc 256 bytes", role: ClientSide, in: cat(hexb("82 7e [len16] 0100 [256]"), rep('z', 256)),
			want: []Message{{OpBinary, rep('z', 256)}},
		},
		{
			name: "rfc 64 KiB", role: ClientSide, in: cat(hexb("82 7f [len64] 0000000000010000 [65536]"), rep('z', 65536)),
			want: []Message{{OpBinary, rep('z', 65536)}},
		},
		// Valid streams.
		{
			name: "masked hello",
			in:   bits("1 000 0001 [fin rsv text] | 1 0000101 [mask len=5]" + key0 + `"hello"`),
			want: []Message{msg(OpText, "hello")},
		},
		{
			name: "empty text", in: bits("1 000 0001 | 1 0000000" + key0),
			want: []Message{msg(OpText, "")},
		},
		{
			name: "fragments around a ping",
			in: bits("0 000 0001 [text] | 1 0000010" + key0 + `"ab"` +
				"| 1 000 1001 [fin ping] | 1 0000001" + key0 + `"p"` +
				"| 0 000 0000 [cont] | 1 0000000 [len=0]" + key0 +
				"| 1 000 0000 [fin cont] | 1 0000010" + key0 + `"cd"`),
			want: []Message{msg(OpPing, "p"), msg(OpText, "abcd")},
		},
		{
			name: "empty fragments then data", in: bits("0 000 0010 [binary] | 1 0000000" + key0 + "| 1 000 0000 | 1 0000011" + key0 + `"xyz"`),
			want: []Message{msg(OpBinary, "xyz")},
		},
		{
			name: "utf8 sequence split by fragments",
			in:   cat(bits("0 000 0001 | 1 0000001"+key0), []byte{0xce}, bits("1 000 0000 | 1 0000001"+key0), []byte{0xba}),
			want: []Message{msg(OpText, "κ")},
		},
		{
			name: "binary is not utf8 checked", in: cat(bits("1 000 0010 | 1 0000001"+key0), []byte{0xff}),
			want: []Message{msg(OpBinary, "\xff")},
		},
		{
			name: "ping 125 bytes", in: cat(bits("1 000 1001 | 1 1111101 [len=125]"+key0), rep('p', 125)),
			want: []Message{{OpPing, rep('p', 125)}},
		},
		{name: "close empty", in: bits("1 000 1000 | 1 0000000" + key0), want: []Message{msg(OpClose, "")}},
		{
			name: "close 1000 bye", in: bits("1 000 1000 | 1 0000101" + key0 + `00000011 11101000 [1000] "bye"`),
			want: []Message{msg(OpClose, "\x03\xe8bye")},
		},
		{name: "close 3000", in: bits("1 000 1000 | 1 0000010" + key0 + "00001011 10111000"), want: []Message{msg(OpClose, "\x0b\xb8")}},
		{name: "close 4999", in: bits("1 000 1000 | 1 0000010" + key0 + "00010011 10000111"), want: []Message{msg(OpClose, "\x13\x87")}},
		{
			name: "at the limit", max: 5,
			in:   bits("0 000 0001 | 1 0000011" + key0 + `"abc"` + "| 1 000 0000 | 1 0000010" + key0 + `"de"`),
			want: []Message{msg(OpText, "abcde")},
		},
		{
			name: "16-bit encoding of a short length", in: bits("1 000 0010 | 1 1111110 | 00000000 00000010" + key0 + `"ok"`),
			want: []Message{msg(OpBinary, "ok")},
		},
		{
			name: "64-bit encoding of a short length", in: bits("1 000 0010 | 1 1111111 | 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010" + key0 + `"ok"`),
			want: []Message{msg(OpBinary, "ok")},
		},
		// Violations.
		{name: "unmasked client frame", in: bits(`1 000 0001 | 0 0000001 [unmasked] | "h"`), err: ErrUnmasked},
		{name: "masked server frame", role: ClientSide, in: bits("1 000 0001 | 1 0000000" + key0), err: ErrMasked},
		{name: "rsv1", in: bits("1 100 0001 | 1 0000000" + key0), err: ErrReservedBits},
		{name: "rsv2", in: bits("1 010 0001 | 1 0000000" + key0), err: ErrReservedBits},
		{name: "rsv3 on a control frame", in: bits("1 001 1001 | 1 0000000" + key0), err: ErrReservedBits},
		{name: "fragmented ping", in: bits("0 000 1001 | 1 0000000" + key0), err: ErrControlFragmented},
		{name: "fragmented close", in: bits("0 000 1000 | 1 0000000" + key0), err: ErrControlFragmented},
		{name: "ping 126", in: bits("1 000 1001 | 1 1111110 | 00000000 01111110 [126]" + key0), err: ErrControlTooLong},
		{name: "pong with a 64-bit length", in: bits("1 000 1010 | 1 1111111 | 00000000 00000000 00000000 00000000 00000000 00000000 00000000 11001000 [200]" + key0), err: ErrControlTooLong},
		{name: "lone continuation", in: bits("1 000 0000 | 1 0000000" + key0), err: ErrUnexpectedContinuation},
		{
			name: "continuation after a whole message", in: bits("1 000 0001 | 1 0000001" + key0 + `"a" | 1 000 0000 | 1 0000000` + key0),
			want: []Message{msg(OpText, "a")}, err: ErrUnexpectedContinuation,
		},
		{name: "text inside a fragmented message", in: bits("0 000 0001 | 1 0000001" + key0 + `"a" | 1 000 0001 | 1 0000000` + key0), err: ErrExpectedContinuation},
		{name: "binary inside a fragmented message", in: bits("0 000 0010 | 1 0000001" + key0 + `"a" | 1 000 0010 | 1 0000000` + key0), err: ErrExpectedContinuation},
		{name: "64-bit length msb", in: bits("1 000 0010 | 1 1111111 | 10000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000" + key0), err: ErrLengthMSB},
		{name: "16-bit length over the limit", max: 1000, in: bits("1 000 0010 | 1 1111110 | 00000011 11101001 [1001]" + key0), err: ErrMessageTooBig},
		{name: "64-bit length over the default limit", in: bits("1 000 0010 | 1 1111111 | 00000000 00000000 00000000 00000000 00000000 00010000 00000000 00000001 [2^20+1]" + key0), err: ErrMessageTooBig},
		{
			name: "fragments over the limit", max: 5,
			in: bits("0 000 0001 | 1 0000011" + key0 + `"abc"` + "| 1 000 0000 | 1 0000011" + key0 + `"def"`), err: ErrMessageTooBig,
		},
		{
			name: "huge continuation cannot overflow the limit check",
			in: bits("0 000 0010 | 1 0000001" + key0 + `"a"` +
				"| 1 000 0000 | 1 1111111 | 01111111 11111111 11111111 11111111 11111111 11111111 11111111 11111111 [2^63-1]" + key0),
			err: ErrMessageTooBig,
		},
		{name: "invalid utf8", in: cat(bits("1 000 0001 | 1 0000001"+key0), []byte{0xff}), err: ErrInvalidUTF8},
		{name: "utf8 cut by the end of the message", in: cat(bits("1 000 0001 | 1 0000001"+key0), []byte{0xc3}), err: ErrInvalidUTF8},
		{
			name: "invalid utf8 across fragments",
			in:   cat(bits("0 000 0001 | 1 0000001"+key0), []byte{0xce}, bits(`1 000 0000 | 1 0000001`+key0+`"a"`)), err: ErrInvalidUTF8,
		},
		{name: "close of one byte", in: bits("1 000 1000 | 1 0000001" + key0 + "00000011"), err: ErrCloseLength},
		{name: "close reason not utf8", in: cat(bits("1 000 1000 | 1 0000011"+key0+"00000011 11101000"), []byte{0xff}), err: ErrInvalidUTF8},
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		fx = append(fx, parserFixture{
			name: "close code " + strconv.Itoa(int(code)),
			in:   cat(bits("1 000 1000 | 1 0000010"+key0), []byte{byte(code >> 8), byte(code)}),
			err:  ErrInvalidCloseCode,
		})
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		fx = append(fx, parserFixture{
			name: "reserved opcode " + strconv.Itoa(int(op)),
			in:   cat([]byte{0x80 | op}, bits("1 0000000"+key0)),
			err:  ErrReservedOpCode,
		})
	}
	return fx
}

// Every rule of RFC 6455 sections 5.1-5.5, 5.5.1, 7.4 and 8.1, fed whole
// and a byte at a time.
func TestParser_Fixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range parserFixtures() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, chunk := range []int{0, 1} {
				p := &Parser{Role: tc.role, MaxMessageBytes: tc.max}
				var chunks func() int
				if chunk > 0 {
					chunks = func() int { return chunk }
				}
				got, err := parseAll(p, bytes.Clone(tc.in), chunks)
				if !errors.Is(err, tc.err) {
					t.Fatalf("chunk %d: err %v, want %v", chunk, err, tc.err)
				}
				if i, ok := sameMessages(got, tc.want); !ok {
					t.Fatalf("chunk %d: message %d differs: got %+v, want %+v", chunk, i, got, tc.want)
				}
				if tc.err == nil {
					p.Parse(nil)
					if !p.Idle() {
						t.Fatalf("chunk %d: not Idle after the stream", chunk)
					}
					continue
				}
				var pe *ProtocolError
				if !errors.As(err, &pe) || !pe.Code.ValidOnWire() || len(pe.Reason) > MaxControlPayload-2 {
					t.Fatalf("error %v carries no usable close code", err)
				}
			}
		})
	}
}

// Errors carry the close code section 7.4.1 asks for.
func TestParser_ErrorCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  *ProtocolError
		code CloseCode
	}{
		{"unmasked", ErrUnmasked, CloseProtocolError},
		{"masked", ErrMasked, CloseProtocolError},
		{"reserved bits", ErrReservedBits, CloseProtocolError},
		{"reserved opcode", ErrReservedOpCode, CloseProtocolError},
		{"control too long", ErrControlTooLong, CloseProtocolError},
		{"control fragmented", ErrControlFragmented, CloseProtocolError},
		{"unexpected continuation", ErrUnexpectedContinuation, CloseProtocolError},
		{"expected continuation", ErrExpectedContinuation, CloseProtocolError},
		{"length msb", ErrLengthMSB, CloseProtocolError},
		{"too big", ErrMessageTooBig, CloseMessageTooBig},
		{"invalid utf8", ErrInvalidUTF8, CloseInvalidPayload},
		{"close length", ErrCloseLength, CloseProtocolError},
		{"close code", ErrInvalidCloseCode, CloseProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err.Code != tc.code {
				t.Errorf("code %v, want %v", tc.err.Code, tc.code)
			}
			if msg := tc.err.Error(); msg != "frame: "+tc.err.Reason {
				t.Errorf("Error() %q", msg)
			}
		})
	}
}

// The limit is checked on the declared length, before any payload arrives.
func TestParser_TooBigBeforePayload(t *testing.T) {
	t.Parallel()
	hdr := AppendClientHeader(nil, true, OpBinary, 1001, testKey)
	p := &Parser{MaxMessageBytes: 1000}
	_, n, err := p.Parse(hdr)
	if !errors.Is(err, ErrMessageTooBig) || n != len(hdr) {
		t.Fatalf("n %d err %v, want %d and ErrMessageTooBig", n, err, len(hdr))
	}
}

// A declared length never allocates: the buffer grows with what arrives.
func TestParser_BufferGrowsWithArrivals(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	f := clientFrame(true, OpBinary, rep('b', size))
	p := &Parser{}
	hdr := len(f) - size
	if _, _, err := p.Parse(f[:hdr+10]); err != nil {
		t.Fatal(err)
	}
	if c := cap(*p.msg); c > smallBuf {
		t.Fatalf("10 bytes of a 1 MiB frame took a %d byte buffer", c)
	}
	got := 10
	for off := hdr + 10; off < len(f); off += 5000 {
		m, _, err := p.Parse(f[off:min(off+5000, len(f))])
		if err != nil {
			t.Fatal(err)
		}
		got += min(5000, len(f)-off)
		if m.Op != 0 {
			if !bytes.Equal(m.Payload, rep('b', size)) {
				t.Fatal("payload differs")
			}
			break
		}
		if c := cap(*p.msg); c > max(mediumBuf, 2*got) {
			t.Fatalf("%d bytes arrived, buffer of %d", got, c)
		}
	}
	p.Parse(nil)
	if !p.Idle() {
		t.Fatal("buffer held after the message")
	}
}

// An unfragmented message wholly in data aliases data.
func TestParser_ZeroCopy(t *testing.T) {
	t.Parallel()
	for _, op := range []OpCode{OpText, OpBinary, OpPing, OpClose} {
		payload := []byte("\x03\xe8payload")
		if op == OpText {
			payload = []byte("text payload")
		}
		data := append(clientFrame(true, op, payload), clientFrame(true, OpText, []byte("next"))...)
		p := &Parser{}
		m, n, err := p.Parse(data)
		if err != nil || m.Op != op || !bytes.Equal(m.Payload, payload) {
			t.Fatalf("%v: %v %q", op, err, m.Payload)
		}
		if &m.Payload[0] != &data[n-len(payload)] {
			t.Fatalf("%v: payload copied", op)
		}
		if cap(m.Payload) != len(m.Payload) {
			t.Fatalf("%v: payload capacity %d reaches into the next frame", op, cap(m.Payload))
		}
		if !p.Idle() {
			t.Fatalf("%v: not Idle after a zero-copy message", op)
		}
	}
}

// builder assembles a stream of client or server frames and the messages
// a Parser must deliver for it.
type builder struct {
	role   Role
	stream []byte
	want   []Message
}

func (b *builder) frame(fin bool, op OpCode, payload []byte) {
	if b.role == ServerSide {
		b.stream = append(b.stream, clientFrame(fin, op, payload)...)
	} else {
		b.stream = append(AppendHeader(b.stream, fin, op, len(payload)), payload...)
	}
}

func (b *builder) message(op OpCode, payload []byte) { b.want = append(b.want, Message{op, payload}) }

// randomStream mixes whole, fragmented, empty and interleaved messages.
func randomStream(r *rand.Rand, role Role, count int) builder {
	b := builder{role: role}
	randBytes := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		return p
	}
	text := []byte("κόσμε fragmented €𝄞 text, ascii ascii ascii ascii")
	for range count {
		switch r.IntN(7) {
		case 0:
			p := bytes.Repeat([]byte("é"), r.IntN(3000))
			b.frame(true, OpText, p)
			b.message(OpText, p)
		case 1:
			p := randBytes([]int{0, 1, 125, 126, 65535, 65536, r.IntN(70000)}[r.IntN(7)])
			b.frame(true, OpBinary, p)
			b.message(OpBinary, p)
		case 2: // fragmented text, cut inside runes, pings and pongs between
			whole := bytes.Repeat(text, 1+r.IntN(40))
			op := OpText
			for rest := whole; ; {
				k := r.IntN(len(rest) + 1)
				fin := k == len(rest)
				b.frame(fin, op, rest[:k])
				op, rest = OpContinuation, rest[k:]
				if fin {
					break
				}
				if r.IntN(2) == 0 {
					c := OpPing + OpCode(r.IntN(2))
					p := randBytes(r.IntN(MaxControlPayload + 1))
					b.frame(true, c, p)
					b.message(c, p)
				}
			}
			b.message(OpText, whole)
		case 3: // fragmented binary
			whole := randBytes(r.IntN(100000))
			cut := r.IntN(len(whole) + 1)
			b.frame(false, OpBinary, whole[:cut])
			b.frame(false, OpContinuation, nil)
			b.frame(true, OpContinuation, whole[cut:])
			b.message(OpBinary, whole)
		case 4:
			p := randBytes(r.IntN(MaxControlPayload + 1))
			b.frame(true, OpPong, p)
			b.message(OpPong, p)
		case 5:
			b.frame(true, OpPing, nil)
			b.message(OpPing, nil)
		case 6:
			p := AppendClosePayload(nil, CloseGoingAway, "bye €")
			b.frame(true, OpClose, p)
			b.message(OpClose, p)
		}
	}
	return b
}

// A stream parses to the same messages whole, a byte at a time and in
// random pieces.
func TestParser_SplitInput(t *testing.T) {
	t.Parallel()
	for _, role := range []Role{ServerSide, ClientSide} {
		r := rand.New(rand.NewPCG(1, uint64(role)))
		s := randomStream(r, role, 60)
		for _, tc := range []struct {
			name   string
			chunks func() int
		}{
			{"one shot", nil},
			{"1 byte", func() int { return 1 }},
			{"7 bytes", func() int { return 7 }},
			{"random small", func() int { return 1 + r.IntN(20) }},
			{"random large", func() int { return 1 + r.IntN(5000) }},
		} {
			t.Run(role.String()+"/"+tc.name, func(t *testing.T) {
				p := &Parser{Role: role}
				got, err := parseAll(p, bytes.Clone(s.stream), tc.chunks)
				if err != nil {
					t.Fatal(err)
				}
				if i, ok := sameMessages(got, s.want); !ok {
					t.Fatalf("%d messages, want %d; first difference at %d", len(got), len(s.want), i)
				}
				p.Parse(nil) // release the last message's buffer
				if !p.Idle() {
					t.Fatal("parser holds state or a buffer between messages")
				}
			})
		}
	}
}

// Invalid UTF-8 fails at the first bad byte, before its frame is complete
// (RFC 6455 section 8.1, Autobahn 6.x).
func TestParser_UTF8FailFast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pre  []byte // earlier fragments, complete
		text string // frame payload, of which only head bytes are fed
		head int
	}{
		{"f4 90 mid-frame", nil, "ok \xce\xba\xf4\x90 and much more text that is never needed", 7},
		{"surrogate mid-frame", nil, "κόσμε\xed\xa0\x80edited", len("κόσμε") + 2},
		{"c0 lead", nil, "\xc0\xaf and more", 1},
		{"in a continuation", clientFrame(false, OpText, []byte("fine so far ")), "\xce\xba\xff more", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := clientFrame(true, OpContinuation, []byte(tc.text))
			if tc.pre == nil {
				f = clientFrame(true, OpText, []byte(tc.text))
			}
			hdr := len(f) - len(tc.text)
			in := append(bytes.Clone(tc.pre), f[:hdr+tc.head]...)
			p := &Parser{}
			_, err := parseAll(p, bytes.Clone(in), nil)
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("err %v, want ErrInvalidUTF8 before the frame completes", err)
			}
			// One byte less must not fail yet.
			p = &Parser{}
			if _, err := parseAll(p, in[:len(in)-1], nil); err != nil {
				t.Fatalf("failed early: %v", err)
			}
		})
	}
}

func TestParser_ErrorIsSticky(t *testing.T) {
	t.Parallel()
	p := &Parser{}
	if _, err := parseAll(p, []byte{0x81, 0x00}, nil); !errors.Is(err, ErrUnmasked) {
		t.Fatal(err)
	}
	m, n, err := p.Parse(clientFrame(true, OpText, []byte("x")))
	if !errors.Is(err, ErrUnmasked) || n != 0 || m.Op != 0 {
		t.Fatalf("after an error: %v %d %v", m.Op, n, err)
	}
	if p.Idle() {
		t.Fatal("a failed parser reports Idle")
	}
	p.Reset()
	if _, err := parseAll(p, clientFrame(true, OpText, []byte("x")), nil); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
}

// Idle is false while anything is pending or held, and Reset releases it.
func TestParser_Idle(t *testing.T) {
	t.Parallel()
	f := clientFrame(true, OpText, []byte("hello, world"))
	frag := clientFrame(false, OpText, []byte("hel"))
	ping := clientFrame(true, OpPing, []byte("ping!"))
	for _, tc := range []struct {
		name string
		in   []byte
		idle bool
	}{
		{"fresh", nil, true},
		{"part of a header", f[:1], false},
		{"header only", f[:6], false},
		{"part of a payload", f[:9], false},
		{"whole message", f, true},
		{"open fragmented message", frag, false},
		{"part of a ping", ping[:8], false},
		{"part of a ping inside a fragmented message", append(bytes.Clone(frag), ping[:8]...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Parser{}
			if _, err := parseAll(p, bytes.Clone(tc.in), nil); err != nil {
				t.Fatal(err)
			}
			if p.Idle() != tc.idle {
				t.Fatalf("Idle %v, want %v", p.Idle(), tc.idle)
			}
			p.Reset()
			if !p.Idle() {
				t.Fatal("not Idle after Reset")
			}
		})
	}
	// The buffer of a gathered message is held until the next call.
	p := &Parser{}
	m, _, _ := p.Parse(f[:9])
	m, _, _ = p.Parse(f[9:])
	if m.Op != OpText || p.Idle() {
		t.Fatalf("op %v idle %v: a gathered message's buffer is released before its use", m.Op, p.Idle())
	}
	if _, _, err := p.Parse(nil); err != nil || !p.Idle() {
		t.Fatalf("Parse(nil) did not release the buffer: %v", err)
	}
}

// The Parser is embedded in every connection: keep it small.
func TestParser_Size(t *testing.T) {
	t.Parallel()
	if size := unsafe.Sizeof(Parser{}); size > 96 {
		t.Fatalf("Parser is %d bytes, want at most 96", size)
	}
}

func TestParser_ZeroAllocs(t *testing.T) {
	whole := clientFrame(true, OpText, rep('a', 1000))
	frag := append(append(clientFrame(false, OpBinary, rep('b', 3000)), clientFrame(true, OpPing, []byte("p"))...),
		clientFrame(true, OpContinuation, rep('c', 3000))...)
	buf := make([]byte, len(frag))
	p := &Parser{}
	for _, tc := range []struct {
		name   string
		in     []byte
		chunk  int
		pooled bool
	}{
		{"whole", whole, 0, false},
		{"split", whole, 500, true},
		{"fragmented", frag, 0, true},
		{"fragmented and split", frag, 700, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pooled && raceEnabled {
				t.Skip("sync.Pool drops items under the race detector")
			}
			run := func() {
				b := buf[:len(tc.in)]
				copy(b, tc.in)
				for len(b) > 0 {
					k := len(b)
					if tc.chunk > 0 {
						k = min(k, tc.chunk)
					}
					data := b[:k]
					b = b[k:]
					for len(data) > 0 {
						_, n, err := p.Parse(data)
						if err != nil {
							t.Fatal(err)
						}
						data = data[n:]
					}
				}
			}
			run() // warm the pools
			if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
				t.Fatalf("%v allocations per message", allocs)
			}
		})
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
				if m, _, err := p.Parse(buf); err != nil || m.Op != OpBinary {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParserSplit feeds a text message in reads of 1000 bytes, so its
// payload is gathered in a pooled buffer.
func BenchmarkParserSplit(b *testing.B) {
	for _, size := range []int{4096, 65536} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			f := clientFrame(true, OpText, rep('a', size))
			buf := make([]byte, len(f))
			p := &Parser{}
			b.ReportAllocs()
			b.SetBytes(int64(size))
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
		})
	}
}

// Frames counts every accepted header: fragments and the control frames
// between them, not only the messages Parse returns.
func TestParser_Frames(t *testing.T) {
	t.Parallel()
	in := append(append(clientFrame(false, OpText, []byte("a")), clientFrame(true, OpPing, nil)...),
		append(clientFrame(false, OpContinuation, nil), clientFrame(true, OpContinuation, []byte("b"))...)...)
	p := &Parser{}
	var got []OpCode
	for len(in) > 0 {
		m, n, err := p.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		in = in[n:]
		if m.Op != 0 {
			got = append(got, m.Op)
		}
	}
	if len(got) != 2 || p.Frames() != 4 {
		t.Fatalf("messages %v and %d frames, want [ping text] and 4", got, p.Frames())
	}
}
