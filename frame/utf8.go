package frame

import "encoding/binary"

// UTF8 validates UTF-8 incrementally (RFC 6455 section 8.1, RFC 3629
// section 4), failing at the first byte that cannot continue a valid
// sequence: a stream split anywhere gives the same verdict as one call.
type UTF8 struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // allowed range of the next continuation byte
	bad    bool
}

// Write feeds b and reports whether everything so far is a prefix of valid
// UTF-8. After false it stays false until Reset.
func (u *UTF8) Write(b []byte) bool {
	if u.bad {
		return false
	}
	i := 0
	for i < len(b) {
		if u.need == 0 {
			for i+8 <= len(b) && binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(b) {
				break
			}
			c := b[i]
			i++
			switch {
			case c < 0x80:
				continue
			case c < 0xC2: // continuation byte as a lead, or overlong 2-byte lead
				u.bad = true
				return false
			case c < 0xE0:
				u.need, u.lo, u.hi = 1, 0x80, 0xBF
			case c == 0xE0: // excludes overlong 3-byte forms
				u.need, u.lo, u.hi = 2, 0xA0, 0xBF
			case c == 0xED: // excludes surrogates U+D800..U+DFFF
				u.need, u.lo, u.hi = 2, 0x80, 0x9F
			case c < 0xF0:
				u.need, u.lo, u.hi = 2, 0x80, 0xBF
			case c == 0xF0: // excludes overlong 4-byte forms
				u.need, u.lo, u.hi = 3, 0x90, 0xBF
			case c < 0xF4:
				u.need, u.lo, u.hi = 3, 0x80, 0xBF
			case c == 0xF4: // caps at U+10FFFF
				u.need, u.lo, u.hi = 3, 0x80, 0x8F
			default:
				u.bad = true
				return false
			}
			continue
		}
		c := b[i]
		if c < u.lo || c > u.hi {
			u.bad = true
			return false
		}
		u.need--
		u.lo, u.hi = 0x80, 0xBF
		i++
	}
	return true
}

// Complete reports whether no sequence is left unfinished (and nothing
// invalid was seen).
func (u *UTF8) Complete() bool { return u.need == 0 && !u.bad }

// Reset forgets everything written.
func (u *UTF8) Reset() { *u = UTF8{} }
