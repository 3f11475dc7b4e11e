package frame

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestMask_AgreesWithNaive(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for pos := range 4 {
		for n := 0; n <= 100; n++ {
			for _, size := range []int{n, n + 4093} {
				b := make([]byte, size)
				for i := range b {
					b[i] = byte(i * 7)
				}
				want := bytes.Clone(b)
				for i := range want {
					want[i] ^= key[(pos+i)&3]
				}
				if next := Mask(b, key, pos); next != (pos+size)&3 {
					t.Fatalf("pos %d len %d: next %d", pos, size, next)
				}
				if !bytes.Equal(b, want) {
					t.Fatalf("pos %d len %d: differs from the naive loop", pos, size)
				}
			}
		}
	}
}

func TestUTF8_FailsAtFirstBadByte(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		bad  int // index of the first byte that must fail; -1: valid
	}{
		{"ascii", "hello", -1},
		{"2-byte", "é", -1},
		{"3-byte", "€", -1},
		{"4-byte", "𝄞", -1},
		{"max", "\U0010ffff", -1},
		{"lone continuation", "a\x80", 1},
		{"c0 overlong lead", "\xc0\xaf", 0},
		{"c1 overlong lead", "\xc1\xbf", 0},
		{"e0 overlong", "\xe0\x80\x80", 1},
		{"surrogate", "\xed\xa0\x80", 1},
		{"f0 overlong", "\xf0\x80\x80\x80", 1},
		{"beyond 10ffff", "\xf4\x90\x80\x80", 1},
		{"f5 lead", "\xf5", 0},
		{"ff", "ab\xff", 2},
		{"missing continuation", "\xe2\x82a", 2},
		{"autobahn 6.4.1", "κόσμε\xf4\x90\x80\x80edited", len("κόσμε") + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u UTF8
			failed := -1
			for i := range len(tc.in) {
				if !u.Write([]byte{tc.in[i]}) {
					failed = i
					break
				}
			}
			if failed != tc.bad {
				t.Fatalf("failed at byte %d, want %d", failed, tc.bad)
			}
			if tc.bad == -1 && !u.Complete() {
				t.Fatal("valid input not Complete")
			}
		})
	}
}

func TestUTF8_AgreesWithStdlib(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "é", "€", "𝄞", "\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90", "\xff", "abcdefgh"}
	for range 5000 {
		var b []byte
		for range r.IntN(20) {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		var u UTF8
		ok := true
		for rest := b; len(rest) > 0; {
			k := 1 + r.IntN(len(rest))
			ok = u.Write(rest[:k]) && ok
			rest = rest[k:]
		}
		if got, want := ok && u.Complete(), utf8.Valid(b); got != want {
			t.Fatalf("%q: got %v, utf8.Valid %v", b, got, want)
		}
	}
}

// The parser's header decoding agrees with gobwas/ws on random headers, and
// gobwas/ws reads what AppendHeader and AppendClientFrame write.
func TestHeader_AgreesWithGobwas(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		want := ws.Header{
			Fin: r.IntN(2) == 0, Rsv: byte(r.IntN(8)), OpCode: ws.OpCode(r.IntN(16)),
			Masked: r.IntN(2) == 0, Length: []int64{0, 1, 125, 126, 65535, 65536, 1 << 40}[r.IntN(7)],
		}
		if want.Masked {
			want.Mask = ws.NewMask()
		}
		var b bytes.Buffer
		if err := ws.WriteHeader(&b, want); err != nil {
			t.Fatal(err)
		}
		h, size, ok, err := decodeHeader(b.Bytes())
		if err != nil || !ok || size != b.Len() {
			t.Fatalf("%+v: size %d ok %v err %v", want, size, ok, err)
		}
		if h.fin != want.Fin || h.rsv != want.Rsv || h.op != OpCode(want.OpCode) || h.masked != want.Masked || h.length != want.Length || (want.Masked && h.key != want.Mask) {
			t.Fatalf("decoded %+v, gobwas wrote %+v", h, want)
		}
		if !want.Masked {
			ours := AppendHeader(nil, want.Fin, OpCode(want.OpCode), int(want.Length))
			got, err := ws.ReadHeader(bytes.NewReader(ours))
			if err != nil || got.Fin != want.Fin || got.OpCode != want.OpCode || got.Length != want.Length || got.Masked {
				t.Fatalf("gobwas read %+v (%v) from AppendHeader of %+v", got, err, want)
			}
		}
	}
	for _, n := range []int{0, 10, 200, 70000} {
		payload := bytes.Repeat([]byte("z"), n)
		f := AppendClientFrame(nil, OpText, payload, [4]byte{9, 8, 7, 6})
		got, op, err := wsutil.ReadClientData(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(f), io.Discard})
		if err != nil || op != ws.OpText || !bytes.Equal(got, payload) {
			t.Fatalf("len %d: gobwas read %v %d bytes: %v", n, op, len(got), err)
		}
	}
}

func TestClosePayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code  CloseCode
		valid bool
	}{
		{0, false}, {999, false}, {1000, true}, {1003, true}, {1004, false}, {1005, false}, {1006, false},
		{1007, true}, {1011, true}, {1014, true}, {1015, false}, {1016, false}, {2999, false},
		{3000, true}, {4999, true}, {5000, false}, {65535, false},
	} {
		t.Run(strconv.Itoa(int(tc.code)), func(t *testing.T) {
			p := []byte{byte(tc.code >> 8), byte(tc.code), 'o', 'k'}
			code, reason, err := ParseClosePayload(p)
			if tc.valid != (err == nil) {
				t.Fatalf("err %v, want valid=%v", err, tc.valid)
			}
			if tc.valid && (code != tc.code || string(reason) != "ok") {
				t.Fatalf("got %d %q", code, reason)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidCloseCode) {
				t.Fatalf("err %v, want ErrInvalidCloseCode", err)
			}
		})
	}
	long := bytes.Repeat([]byte("€"), 100) // 300 bytes
	p := AppendClosePayload(nil, CloseGoingAway, string(long))
	if len(p) > MaxControlPayload || !utf8.Valid(p[2:]) {
		t.Fatalf("close payload of %d bytes, valid UTF-8 %v", len(p), utf8.Valid(p[2:]))
	}
	if got := AppendClosePayload(nil, CloseNoStatus, "x"); len(got) != 0 {
		t.Fatalf("CloseNoStatus payload %q, want empty", got)
	}
}

func TestPrepared(t *testing.T) {
	t.Parallel()
	src := []byte("shared")
	p := NewPrepared(OpText, src)
	src[0] = 'X' // the prepared frame owns a copy
	h, err := ws.ReadHeader(bytes.NewReader(p.Bytes()))
	if err != nil || h.OpCode != ws.OpText || !h.Fin || h.Length != 6 || string(p.Bytes()[2:]) != "shared" || p.Len() != 8 {
		t.Fatalf("%+v %v %q", h, err, p.Bytes())
	}
	c := NewClosePrepared(CloseGoingAway, "bye")
	if code, reason, err := ParseClosePayload(c.Bytes()[2:]); err != nil || code != CloseGoingAway || string(reason) != "bye" {
		t.Fatalf("close: %v %q %v", code, reason, err)
	}
}

func BenchmarkMask(b *testing.B) {
	for _, size := range []int{32, 1024, 16384} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				Mask(buf, [4]byte{1, 2, 3, 4}, 1)
			}
		})
	}
}

func BenchmarkUTF8(b *testing.B) {
	for _, tc := range []struct{ name, s string }{
		{"ascii", string(bytes.Repeat([]byte("hello world "), 100))},
		{"mixed", string(bytes.Repeat([]byte("héllo wörld € "), 100))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.s)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var u UTF8
				u.Write(in)
			}
		})
	}
}

func BenchmarkNewPrepared(b *testing.B) {
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		NewPrepared(OpBinary, payload)
	}
}
