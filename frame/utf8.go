package frame

import "encoding/binary"

// UTF8 validates UTF-8 incrementally (RFC 6455 section 8.1, with the
// well-formed sequences of RFC 3629 section 4): Write may be called with
// any split of the text and gives the same verdict as one call over the
// whole. It fails at the first byte that cannot continue valid UTF-8, not
// at the end of the sequence: 0xC0, 0xC1 and 0xF5-0xFF as soon as they are
// seen, and overlong forms (0xE0 0x80-0x9F, 0xF0 0x80-0x8F), surrogates
// (0xED 0xA0-0xBF) and code points past U+10FFFF (0xF4 0x90-0xBF) at their
// second byte. The zero value is ready to use.
type UTF8 struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // allowed range of the next continuation byte
	bad    bool
}

// lead classes: the high nibble is the sequence's length (0 for a byte that
// cannot start one), the low nibble indexes secondRange.
var leads = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c < 0x80:
			t[c] = 1 << 4
		case c < 0xC2: // continuation bytes, overlong 2-byte leads
			t[c] = 0
		case c < 0xE0:
			t[c] = 2 << 4
		case c == 0xE0:
			t[c] = 3<<4 | 1
		case c == 0xED:
			t[c] = 3<<4 | 2
		case c < 0xF0:
			t[c] = 3 << 4
		case c == 0xF0:
			t[c] = 4<<4 | 3
		case c < 0xF4:
			t[c] = 4 << 4
		case c == 0xF4:
			t[c] = 4<<4 | 4
		}
	}
	return t
}()

// secondRange is the range allowed for the byte after a lead (RFC 3629
// section 4); later continuation bytes are always 0x80-0xBF.
var secondRange = [5][2]byte{
	{0x80, 0xBF},
	{0xA0, 0xBF}, // after 0xE0: no overlong 3-byte forms
	{0x80, 0x9F}, // after 0xED: no surrogates U+D800-U+DFFF
	{0x90, 0xBF}, // after 0xF0: no overlong 4-byte forms
	{0x80, 0x8F}, // after 0xF4: nothing past U+10FFFF
}

const asciiMask = 0x8080808080808080

// Write feeds b and reports whether everything written since the last
// Reset is a prefix of valid UTF-8. Once it returns false it keeps
// returning false until Reset.
func (u *UTF8) Write(b []byte) bool {
	if u.bad {
		return false
	}
	i, ok := u.continuation(b)
	if !ok {
		return false
	}
	for i < len(b) {
		for i+8 <= len(b) && binary.LittleEndian.Uint64(b[i:])&asciiMask == 0 {
			i += 8
		}
		if i == len(b) {
			break
		}
		c := b[i]
		if c < 0x80 {
			i++
			continue
		}
		class := leads[c]
		size := int(class >> 4)
		if size == 0 {
			u.bad = true
			return false
		}
		r := secondRange[class&0xF]
		if len(b)-i < size {
			// The sequence goes on past b: check what is here and
			// remember what is still owed.
			u.need, u.lo, u.hi = uint8(size-1), r[0], r[1]
			_, ok := u.continuation(b[i+1:])
			return ok
		}
		if c1 := b[i+1]; c1 < r[0] || c1 > r[1] ||
			size > 2 && b[i+2]&0xC0 != 0x80 ||
			size > 3 && b[i+3]&0xC0 != 0x80 {
			u.bad = true
			return false
		}
		i += size
	}
	return true
}

// continuation consumes the continuation bytes owed by a sequence begun
// earlier, returning how many it took from b.
func (u *UTF8) continuation(b []byte) (int, bool) {
	i := 0
	for ; u.need > 0 && i < len(b); i++ {
		if c := b[i]; c < u.lo || c > u.hi {
			u.bad = true
			return i, false
		}
		u.need--
		u.lo, u.hi = 0x80, 0xBF
	}
	return i, true
}

// Complete reports whether the bytes written so far are valid UTF-8 with
// no sequence left unfinished.
func (u *UTF8) Complete() bool { return u.need == 0 && !u.bad }

// Reset forgets everything written, making u ready for a new text.
func (u *UTF8) Reset() { *u = UTF8{} }
