package frame

// Prepared is one server message serialized once: header and payload in
// one immutable byte slice that every receiver shares, so a broadcast costs
// one encoding however many connections it reaches. Safe for concurrent
// use: nothing modifies it after NewPrepared returns.
type Prepared struct {
	b  []byte
	op OpCode
}

// NewPrepared builds the unfragmented server frame (FIN set, unmasked)
// carrying a copy of payload. The caller keeps control payloads within
// MaxControlPayload.
func NewPrepared(op OpCode, payload []byte) *Prepared {
	b := make([]byte, 0, MaxHeaderBytes+len(payload))
	return &Prepared{b: AppendFrame(b, op, payload), op: op}
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
