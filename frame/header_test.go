package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Header fixtures of every length encoding (RFC 6455 section 5.2), with
// the 125/126, 65535/65536 boundaries and lengths in a longer encoding than
// needed, which are accepted.
func TestHeader_Decode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		in     []byte
		want   header
		size   int
		minEnc bool // AppendHeader/AppendClientHeader write exactly in
		err    error
	}{
		{
			name: "7-bit 0 unmasked", minEnc: true, size: 2,
			in:   bits("1 000 0010 [fin rsv binary] | 0 0000000 [unmasked len=0]"),
			want: header{fin: true, op: OpBinary},
		},
		{
			name: "7-bit 125 masked", minEnc: true, size: 6,
			in:   bits("1 000 0001 [fin rsv text] | 1 1111101 [masked len=125] | 10100001 10110010 11000011 11010100 [key]"),
			want: header{fin: true, op: OpText, masked: true, key: testKey, length: 125},
		},
		{
			name: "16-bit 126", minEnc: true, size: 4,
			in:   bits("0 000 0010 [binary] | 0 1111110 [len16] | 00000000 01111110 [126]"),
			want: header{op: OpBinary, length: 126},
		},
		{
			name: "16-bit 65535 masked", minEnc: true, size: 8,
			in:   bits("1 000 0000 [fin continuation] | 1 1111110 [masked len16] | 11111111 11111111 [65535] | 10100001 10110010 11000011 11010100 [key]"),
			want: header{fin: true, op: OpContinuation, masked: true, key: testKey, length: 65535},
		},
		{
			name: "64-bit 65536", minEnc: true, size: 10,
			in:   bits("1 000 0010 | 0 1111111 [len64] | 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000 [65536]"),
			want: header{fin: true, op: OpBinary, length: 65536},
		},
		{
			name: "64-bit max masked", minEnc: true, size: 14,
			in:   bits("1 000 0010 | 1 1111111 | 01111111 11111111 11111111 11111111 11111111 11111111 11111111 11111111 [2^63-1] | 10100001 10110010 11000011 11010100"),
			want: header{fin: true, op: OpBinary, masked: true, key: testKey, length: 1<<63 - 1},
		},
		{
			name: "16-bit encoding of 5 accepted", size: 4,
			in:   bits("1 000 0001 | 0 1111110 | 00000000 00000101"),
			want: header{fin: true, op: OpText, length: 5},
		},
		{
			name: "64-bit encoding of 5 accepted", size: 10,
			in:   bits("1 000 0001 | 0 1111111 | 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000101"),
			want: header{fin: true, op: OpText, length: 5},
		},
		{
			name: "rsv and reserved opcode decoded, not judged", size: 2,
			in:   bits("0 101 1011 [rsv1 rsv3 op 0xB] | 0 0000011"),
			want: header{rsv: 5, op: 0xB, length: 3},
		},
		{
			name: "64-bit msb set", size: 10, err: ErrLengthMSB,
			in: bits("1 000 0010 | 0 1111111 | 10000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, size, ok, err := decodeHeader(tc.in)
			if !ok || size != tc.size || size != len(tc.in) {
				t.Fatalf("size %d ok %v, want %d of %d bytes", size, ok, tc.size, len(tc.in))
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || h != tc.want {
				t.Fatalf("got %+v %v, want %+v", h, err, tc.want)
			}
			for k := range len(tc.in) {
				if _, _, ok, _ := decodeHeader(tc.in[:k]); ok {
					t.Fatalf("complete after %d of %d bytes", k, len(tc.in))
				}
			}
			if !tc.minEnc {
				return
			}
			var out []byte
			if h.masked {
				out = AppendClientHeader(nil, h.fin, h.op, int(h.length), h.key)
			} else {
				out = AppendHeader(nil, h.fin, h.op, int(h.length))
			}
			if !bytes.Equal(out, tc.in) {
				t.Fatalf("append wrote % x, want % x", out, tc.in)
			}
		})
	}
}

// decodeHeader agrees with gobwas ws.ReadHeader on random bytes, including
// its ErrHeaderLengthMSB.
func TestHeader_AgreesWithGobwasReadHeader(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, MaxHeaderBytes)
	for range 20000 {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(2) == 0 {
			b[2] &= 0x7F // mostly representable 64-bit lengths
		}
		want, werr := ws.ReadHeader(bytes.NewReader(b))
		h, size, ok, err := decodeHeader(b)
		if !ok {
			t.Fatalf("% x: incomplete", b)
		}
		if werr != nil {
			if !errors.Is(werr, ws.ErrHeaderLengthMSB) || !errors.Is(err, ErrLengthMSB) {
				t.Fatalf("% x: gobwas %v, ours %v", b, werr, err)
			}
			continue
		}
		if err != nil || h.fin != want.Fin || h.rsv != want.Rsv || h.op != OpCode(want.OpCode) ||
			h.masked != want.Masked || h.length != want.Length || h.key != want.Mask {
			t.Fatalf("% x: ours %+v (%v), gobwas %+v", b, h, err, want)
		}
		if size != ws.HeaderSize(want) {
			t.Fatalf("% x: size %d, gobwas %d", b, size, ws.HeaderSize(want))
		}
	}
}

// For random headers, the Parser accepts exactly those that gobwas
// ws.CheckHeader accepts, in the same role and fragmentation state, and
// decodes them as ws.ReadHeader does.
func TestParser_HeaderAgreesWithGobwas(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	lengths := []int64{0, 1, 125, 126, 127, 65535, 65536, 1 << 40}
	for range 20000 {
		h := ws.Header{
			Fin:    r.IntN(3) > 0,
			Rsv:    byte(r.IntN(8) * r.IntN(2)),
			OpCode: ws.OpCode(r.IntN(16)),
			Masked: r.IntN(2) == 0,
			Length: lengths[r.IntN(len(lengths))],
		}
		if h.Masked {
			binary.LittleEndian.PutUint32(h.Mask[:], r.Uint32())
		}
		role, state := ServerSide, ws.StateServerSide
		if r.IntN(2) == 0 {
			role, state = ClientSide, ws.StateClientSide
		}
		p := &Parser{Role: role, MaxMessageBytes: 1<<62 + 1}
		var prefix []byte
		if r.IntN(2) == 0 { // inside a fragmented message
			state |= ws.StateFragmented
			prefix = AppendHeader(nil, false, OpText, 0)
			if role == ServerSide {
				prefix = AppendClientHeader(nil, false, OpText, 0, testKey)
			}
		}
		var buf bytes.Buffer
		if err := ws.WriteHeader(&buf, h); err != nil {
			t.Fatal(err)
		}
		in := append(prefix, buf.Bytes()...)
		m, n, err := p.Parse(in)
		wantErr := ws.CheckHeader(h, state)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%+v in %v: ours %v, gobwas %v", h, state, err, wantErr)
		}
		if err != nil {
			continue
		}
		if h.Length == 0 {
			// The whole, empty frame is in: no payload is pending, and
			// a final one comes back as a message.
			if p.inBody || n != len(in) || (m.Op != 0) != h.Fin {
				t.Fatalf("%+v: op %v n=%d inBody %v", h, m.Op, n, p.inBody)
			}
			continue
		}
		if n != len(in) || !p.inBody || p.op != OpCode(h.OpCode) || p.fin != h.Fin || p.masked != h.Masked || p.remain != h.Length || (h.Masked && p.key != h.Mask) {
			t.Fatalf("%+v: parser holds op %v fin %v masked %v remain %d key %x (n=%d)", h, p.op, p.fin, p.masked, p.remain, p.key, n)
		}
	}
}

// gobwas reads what AppendHeader, AppendClientHeader, AppendFrame and
// AppendClientFrame write.
func TestAppend_ReadByGobwas(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = 'a' + byte(i%26)
		}
		for _, op := range []OpCode{OpText, OpBinary, OpContinuation} {
			for _, fin := range []bool{true, false} {
				h, err := ws.ReadHeader(bytes.NewReader(AppendHeader(nil, fin, op, n)))
				if err != nil || h.Fin != fin || h.OpCode != ws.OpCode(op) || h.Length != int64(n) || h.Masked || h.Rsv != 0 {
					t.Fatalf("AppendHeader(%v, %v, %d): gobwas read %+v, %v", fin, op, n, h, err)
				}
				h, err = ws.ReadHeader(bytes.NewReader(AppendClientHeader(nil, fin, op, n, testKey)))
				if err != nil || h.Fin != fin || h.OpCode != ws.OpCode(op) || h.Length != int64(n) || !h.Masked || h.Mask != testKey {
					t.Fatalf("AppendClientHeader(%v, %v, %d): gobwas read %+v, %v", fin, op, n, h, err)
				}
			}
		}
		f := AppendFrame([]byte("prefix"), OpBinary, payload)
		got, op, err := wsutil.ReadServerData(rw(f[len("prefix"):]))
		if err != nil || op != ws.OpBinary || !bytes.Equal(got, payload) {
			t.Fatalf("AppendFrame len %d: gobwas read %v %d bytes: %v", n, op, len(got), err)
		}
		orig := bytes.Clone(payload)
		f = AppendClientFrame(nil, OpText, payload, [4]byte{9, 8, 7, 6})
		if !bytes.Equal(payload, orig) {
			t.Fatal("AppendClientFrame modified its input")
		}
		got, op, err = wsutil.ReadClientData(rw(f))
		if err != nil || op != ws.OpText || !bytes.Equal(got, payload) {
			t.Fatalf("AppendClientFrame len %d: gobwas read %v %d bytes: %v", n, op, len(got), err)
		}
	}
}

func rw(b []byte) io.ReadWriter {
	return struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(b), io.Discard}
}

func TestOpCode_String(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		op   OpCode
		want string
		ctl  bool
	}{
		{"continuation", OpContinuation, "continuation", false},
		{"text", OpText, "text", false},
		{"binary", OpBinary, "binary", false},
		{"close", OpClose, "close", true},
		{"ping", OpPing, "ping", true},
		{"pong", OpPong, "pong", true},
		{"reserved data", 0x3, "opcode(3)", false},
		{"reserved control", 0xB, "opcode(11)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.op.String(); got != tc.want {
				t.Errorf("String %q, want %q", got, tc.want)
			}
			if got := tc.op.IsControl(); got != tc.ctl {
				t.Errorf("IsControl %v, want %v", got, tc.ctl)
			}
		})
	}
}
