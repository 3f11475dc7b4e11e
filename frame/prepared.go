package frame

import "sync"

// Prepared is one server message serialized once: header and payload in
// one immutable byte slice that every receiver shares, so a broadcast costs
// one encoding however many connections it reaches. Its permessage-deflate
// twin is built the same way, once, by the first receiver that wants it.
// Safe for concurrent use.
type Prepared struct {
	b    []byte
	op   OpCode
	hdr  uint8 // header bytes at the start of b
	once sync.Once
	z    []byte // the compressed twin, once built
}

// NewPrepared builds the unfragmented server frame (FIN set, unmasked)
// carrying a copy of payload. The caller keeps control payloads within
// MaxControlPayload.
func NewPrepared(op OpCode, payload []byte) *Prepared {
	b := AppendHeader(make([]byte, 0, MaxHeaderBytes+len(payload)), true, op, len(payload))
	hdr := len(b)
	return &Prepared{b: append(b, payload...), op: op, hdr: uint8(hdr)}
}

// NewClosePrepared builds a close frame carrying code and reason, cut as
// AppendClosePayload does so that it fits a control frame.
func NewClosePrepared(code CloseCode, reason string) *Prepared {
	var buf [MaxControlPayload]byte
	return NewPrepared(OpClose, AppendClosePayload(buf[:0], code, reason))
}

// Bytes returns the whole frame, ready to write. It must not be modified.
func (p *Prepared) Bytes() []byte { return p.b }

// Len returns the frame's size on the wire in bytes.
func (p *Prepared) Len() int { return len(p.b) }

// OpCode returns the frame's opcode.
func (p *Prepared) OpCode() OpCode { return p.op }

// PayloadLen returns the length of the message's payload, uncompressed.
func (p *Prepared) PayloadLen() int { return len(p.b) - int(p.hdr) }

// Compressed returns the frame for a receiver that negotiated
// permessage-deflate (RFC 7692): RSV1 set and the payload deflated without
// context takeover, so the same bytes are valid for every such receiver.
// The first call compresses, once, with d; every later call returns those
// bytes whatever Deflater it passes. Control frames, payloads under
// d.MinBytes and payloads that do not shrink come back as Bytes returns
// them. The result must not be modified.
func (p *Prepared) Compressed(d *Deflater) []byte {
	p.once.Do(func() { p.z = d.compressedFrame(p) })
	return p.z
}
