package frame

import "encoding/binary"

// Mask XORs b in place with the masking key as RFC 6455 section 5.3
// describes; masking twice with the same key and position restores b. pos
// is the offset of b[0] within the frame's payload (only pos mod 4
// matters), so a payload can be masked in pieces as it arrives. Mask
// returns the position after b, to pass to the next call on the same
// payload.
func Mask(b []byte, key [4]byte, pos int) int {
	pos &= 3
	// Rotate the key so that k[0] applies to b[0].
	k := [4]byte{key[pos], key[(pos+1)&3], key[(pos+2)&3], key[(pos+3)&3]}
	k32 := uint64(binary.LittleEndian.Uint32(k[:]))
	k64 := k32 | k32<<32
	i := 0
	for ; i+32 <= len(b); i += 32 {
		w := b[i : i+32 : i+32] // one bounds check for the four words
		binary.LittleEndian.PutUint64(w[0:], binary.LittleEndian.Uint64(w[0:])^k64)
		binary.LittleEndian.PutUint64(w[8:], binary.LittleEndian.Uint64(w[8:])^k64)
		binary.LittleEndian.PutUint64(w[16:], binary.LittleEndian.Uint64(w[16:])^k64)
		binary.LittleEndian.PutUint64(w[24:], binary.LittleEndian.Uint64(w[24:])^k64)
	}
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
	return (pos + len(b)) & 3
}
