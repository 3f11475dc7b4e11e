package frame

import "encoding/binary"

// Frame size limits of RFC 6455 section 5.
const (
	MaxControlPayload = 125 // section 5.5
	MaxHeaderBytes    = 14  // 2 + 8 (64-bit length) + 4 (mask key)
)

// header is a decoded frame header (section 5.2).
type header struct {
	fin    bool
	rsv    byte
	op     OpCode
	masked bool
	key    [4]byte
	length int64
}

// decodeHeader decodes the header at the start of b. ok is false when b is
// too short; size is the header's length in bytes.
func decodeHeader(b []byte) (h header, size int, ok bool, err error) {
	if len(b) < 2 {
		return h, 0, false, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = OpCode(b[0] & 0xF)
	h.masked = b[1]&0x80 != 0
	size = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		size += 2
	case 127:
		size += 8
	default:
		h.length = int64(l)
	}
	if h.masked {
		size += 4
	}
	if len(b) < size {
		return h, size, false, nil
	}
	switch b[1] & 0x7F {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, size, true, ErrLengthMSB
		}
		h.length = int64(u)
	}
	if h.masked {
		copy(h.key[:], b[size-4:size])
	}
	return h, size, true, nil
}

func appendHeader(dst []byte, fin bool, op OpCode, length int, mask byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case length <= 125:
		return append(dst, b0, mask|byte(length))
	case length <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, b0, mask|126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, mask|127), uint64(length))
	}
}

// AppendHeader appends a server frame header (unmasked, section 5.1).
func AppendHeader(dst []byte, fin bool, op OpCode, length int) []byte {
	return appendHeader(dst, fin, op, length, 0)
}

// AppendClientHeader appends a client frame header masked with key.
func AppendClientHeader(dst []byte, fin bool, op OpCode, length int, key [4]byte) []byte {
	return append(appendHeader(dst, fin, op, length, 0x80), key[:]...)
}

// AppendFrame appends a whole unfragmented server frame.
func AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, true, op, len(payload)), payload...)
}

// AppendClientFrame appends a whole masked client frame; payload itself is
// not modified.
func AppendClientFrame(dst []byte, op OpCode, payload []byte, key [4]byte) []byte {
	dst = AppendClientHeader(dst, true, op, len(payload), key)
	n := len(dst)
	dst = append(dst, payload...)
	Mask(dst[n:], key, 0)
	return dst
}
