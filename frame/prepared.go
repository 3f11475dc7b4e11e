package frame

// Prepared is one server message serialized once: header and payload in one
// immutable byte slice that every receiver shares. Safe for concurrent use.
type Prepared struct {
	b  []byte
	op OpCode
}

// NewPrepared builds the unfragmented frame for payload (copied).
func NewPrepared(op OpCode, payload []byte) *Prepared {
	b := make([]byte, 0, MaxHeaderBytes+len(payload))
	return &Prepared{b: AppendFrame(b, op, payload), op: op}
}

// NewClosePrepared builds a close frame with code and reason.
func NewClosePrepared(code CloseCode, reason string) *Prepared {
	return NewPrepared(OpClose, AppendClosePayload(nil, code, reason))
}

// Bytes is the whole frame. Do not modify it.
func (p *Prepared) Bytes() []byte { return p.b }

// Len is the frame's size on the wire.
func (p *Prepared) Len() int { return len(p.b) }

// OpCode is the frame's opcode.
func (p *Prepared) OpCode() OpCode { return p.op }
