package frame

import "encoding/binary"

// Frame size limits of RFC 6455 section 5.
const (
	// MaxControlPayload is the largest payload of a close, ping or pong
	// frame (section 5.5).
	MaxControlPayload = 125
	// MaxHeaderBytes is the largest frame header: 2 bytes, a 64-bit
	// extended length and a masking key (section 5.2).
	MaxHeaderBytes = 14
)

// Bits of the first two header bytes (section 5.2).
const (
	bitFin     = 0x80
	bitsRsv    = 0x70
	bitsOpCode = 0x0F
	bitMask    = 0x80
	bitsLen    = 0x7F
	len16      = 126 // 7-bit length value announcing a 16-bit length
	len64      = 127 // 7-bit length value announcing a 64-bit length
)

// header is a decoded frame header (section 5.2).
type header struct {
	length int64
	key    [4]byte
	fin    bool
	rsv    byte
	op     OpCode
	masked bool
}

// decodeHeader decodes the header at the start of b. ok is false when b
// holds only part of it; size is the header's length in bytes once the
// first two bytes are known. A 64-bit length with its most significant bit
// set gives ErrLengthMSB with ok true. Lengths in a longer encoding than
// needed are accepted: section 5.2 requires the minimal encoding of
// senders, and rejecting others would buy nothing.
func decodeHeader(b []byte) (h header, size int, ok bool, err *ProtocolError) {
	if len(b) < 2 {
		return h, 0, false, nil
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&bitFin != 0
	h.rsv = (b0 & bitsRsv) >> 4
	h.op = OpCode(b0 & bitsOpCode)
	h.masked = b1&bitMask != 0
	size = 2
	switch l := b1 & bitsLen; l {
	case len16:
		size += 2
	case len64:
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
	switch b1 & bitsLen {
	case len16:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case len64:
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

// appendHeader appends a header with the minimal length encoding (section
// 5.2); mask is bitMask or 0.
func appendHeader(dst []byte, fin bool, op OpCode, length int, mask byte) []byte {
	b0 := byte(op) & bitsOpCode
	if fin {
		b0 |= bitFin
	}
	switch {
	case length <= 125:
		return append(dst, b0, mask|byte(length)&bitsLen)
	case length <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, b0, mask|len16), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, mask|len64), uint64(length))
	}
}

// AppendHeader appends the header of a server frame to dst: unmasked, as
// section 5.1 requires of servers, with the minimal length encoding. length
// is the payload's length and must not be negative.
func AppendHeader(dst []byte, fin bool, op OpCode, length int) []byte {
	return appendHeader(dst, fin, op, length, 0)
}

// AppendClientHeader appends the header of a client frame masked with key
// (section 5.3) to dst. The caller masks the payload, for instance with
// Mask(payload, key, 0). It serves load generators and tests.
func AppendClientHeader(dst []byte, fin bool, op OpCode, length int, key [4]byte) []byte {
	return append(appendHeader(dst, fin, op, length, bitMask), key[:]...)
}

// AppendFrame appends a whole unfragmented server frame carrying payload to
// dst. The caller keeps control payloads within MaxControlPayload.
func AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, true, op, len(payload)), payload...)
}

// AppendClientFrame appends a whole unfragmented client frame carrying
// payload masked with key to dst. The copy in dst is masked; payload itself
// is not modified.
func AppendClientFrame(dst []byte, op OpCode, payload []byte, key [4]byte) []byte {
	dst = AppendClientHeader(dst, true, op, len(payload), key)
	n := len(dst)
	dst = append(dst, payload...)
	Mask(dst[n:], key, 0)
	return dst
}
