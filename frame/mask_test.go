package frame

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
)

func naiveMask(b []byte, key [4]byte, pos int) {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
}

// Mask agrees with a byte-at-a-time loop for every offset and every tail
// (RFC 6455 section 5.3).
func TestMask_AgreesWithNaive(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	sizes := []int{4093, 4096, 1<<16 + 3}
	for n := 0; n <= 100; n++ {
		sizes = append(sizes, n)
	}
	for _, pos := range []int{0, 1, 2, 3, 4, 7, 1<<20 + 2} {
		for _, size := range sizes {
			for _, off := range []int{0, 1, 3} { // unaligned starts
				buf := make([]byte, off+size)
				for i := range buf {
					buf[i] = byte(i * 7)
				}
				b := buf[off:]
				want := bytes.Clone(b)
				naiveMask(want, key, pos)
				if next := Mask(b, key, pos); next != (pos+size)&3 {
					t.Fatalf("pos %d len %d: next %d, want %d", pos, size, next, (pos+size)&3)
				}
				if !bytes.Equal(b, want) {
					t.Fatalf("pos %d len %d off %d: differs from the naive loop", pos, size, off)
				}
			}
		}
	}
}

// Masking in pieces, carrying the returned position, equals masking once.
func TestMask_Pieces(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	key := [4]byte{1, 2, 3, 4}
	for range 1000 {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := bytes.Clone(b)
		Mask(want, key, 0)
		pos := 0
		for rest := b; len(rest) > 0; {
			k := 1 + r.IntN(len(rest))
			pos = Mask(rest[:k], key, pos)
			rest = rest[k:]
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("len %d: pieces differ from one call", len(b))
		}
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
