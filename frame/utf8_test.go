package frame

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// validPrefix is the oracle: b can begin valid UTF-8 when some run of
// continuation bytes completes it into valid UTF-8.
func validPrefix(b []byte) bool {
	if utf8.Valid(b) {
		return true
	}
	for n := 1; n <= 3; n++ {
		for c := 0x80; c <= 0xBF; c++ {
			if utf8.Valid(append(bytes.Clone(b), bytes.Repeat([]byte{byte(c)}, n)...)) {
				return true
			}
		}
	}
	return false
}

// firstBad is the index of the first byte after which b can no longer be
// valid UTF-8, or -1.
func firstBad(b []byte) int {
	for i := range b {
		if !validPrefix(b[:i+1]) {
			return i
		}
	}
	return -1
}

func TestUTF8_FailsAtFirstBadByte(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		bad  int // index of the first byte that must fail; -1: valid
	}{
		{"empty", "", -1},
		{"ascii", "hello, world", -1},
		{"2-byte", "é", -1},
		{"3-byte", "€", -1},
		{"4-byte", "𝄞", -1},
		{"U+007F U+0080", "\x7f\xc2\x80", -1},
		{"U+07FF U+0800", "\xdf\xbf\xe0\xa0\x80", -1},
		{"U+D7FF U+E000", "\xed\x9f\xbf\xee\x80\x80", -1},
		{"U+FFFF U+10000", "\xef\xbf\xbf\xf0\x90\x80\x80", -1},
		{"U+10FFFF", "\xf4\x8f\xbf\xbf", -1},
		{"noncharacter U+FFFE is valid", "\xef\xbf\xbe", -1},
		{"lone continuation", "a\x80", 1},
		{"c0 overlong lead", "\xc0\xaf", 0},
		{"c1 overlong lead", "\xc1\xbf", 0},
		{"e0 overlong", "\xe0\x80\x80", 1},
		{"e0 9f overlong", "\xe0\x9f\xbf", 1},
		{"surrogate D800", "\xed\xa0\x80", 1},
		{"surrogate DFFF", "\xed\xbf\xbf", 1},
		{"f0 overlong", "\xf0\x80\x80\x80", 1},
		{"f0 8f overlong", "\xf0\x8f\xbf\xbf", 1},
		{"beyond 10ffff", "\xf4\x90\x80\x80", 1},
		{"f5 lead", "\xf5\x80\x80\x80", 0},
		{"f8 lead", "\xf8\x88\x80\x80\x80", 0},
		{"fe", "\xfe", 0},
		{"ff after ascii", "ab\xff", 2},
		{"missing 3rd byte", "\xe2\x82a", 2},
		{"missing 4th byte", "\xf0\x9d\x84a", 3},
		{"bad 3rd byte of 4", "\xf0\x9d\xc0\x9e", 2},
		{"autobahn 6.3.1", "κόσμε\xed\xa0\x80edited", len("κόσμε") + 1},
		{"autobahn 6.4.1", "κόσμε\xf4\x90\x80\x80edited", len("κόσμε") + 1},
		{"after 8 ascii", "abcdefgh\x80", 8},
		{"after 16 ascii", "abcdefghijklmnop\xc3\x28", 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if oracle := firstBad([]byte(tc.in)); oracle != tc.bad {
				t.Fatalf("table says %d, oracle %d", tc.bad, oracle)
			}
			var u UTF8
			failed := -1
			for i := range len(tc.in) {
				if !u.Write([]byte{tc.in[i]}) {
					failed = i
					break
				}
			}
			if failed != tc.bad {
				t.Fatalf("byte at a time: failed at %d, want %d", failed, tc.bad)
			}
			u.Reset()
			whole := u.Write([]byte(tc.in)) && u.Complete()
			if whole != utf8.ValidString(tc.in) {
				t.Fatalf("whole: %v, utf8.ValidString %v", whole, utf8.ValidString(tc.in))
			}
			if failed >= 0 && u.Write([]byte("a")) {
				t.Fatal("Write succeeded after a failure")
			}
		})
	}
}

// For random inputs in random pieces, the verdict agrees with utf8.Valid,
// and Write fails in the piece that holds the first bad byte.
func TestUTF8_AgreesWithStdlib(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{
		"a", "abcdefgh", "é", "€", "𝄞", "\U0010ffff", "\x80", "\xbf", "\xc0", "\xc3", "\xe0", "\xe2\x82",
		"\xed", "\xed\xa0", "\xed\x9f", "\xf0", "\xf0\x90", "\xf4", "\xf4\x90", "\xf5", "\xff",
	}
	for range 5000 {
		var b []byte
		for range r.IntN(24) {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		bad := firstBad(b)
		var u UTF8
		ok := true
		for off := 0; off < len(b); {
			k := 1 + r.IntN(len(b)-off)
			if !u.Write(b[off:off+k]) && ok {
				ok = false
				if bad < off || bad >= off+k {
					t.Fatalf("%q: failed in [%d,%d), first bad byte %d", b, off, off+k, bad)
				}
			}
			off += k
		}
		if ok && bad >= 0 {
			t.Fatalf("%q: accepted, first bad byte %d", b, bad)
		}
		if got, want := ok && u.Complete(), utf8.Valid(b); got != want {
			t.Fatalf("%q: got %v, utf8.Valid %v", b, got, want)
		}
	}
}

func BenchmarkUTF8(b *testing.B) {
	for _, tc := range []struct{ name, s string }{
		{"ascii", string(bytes.Repeat([]byte("hello world "), 100))},
		{"mixed", string(bytes.Repeat([]byte("héllo wörld € κόσμε 𝄞 "), 50))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.s)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var u UTF8
				if !u.Write(in) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
