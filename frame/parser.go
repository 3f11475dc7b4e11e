package frame

import "sync"

// DefaultMaxMessageBytes is the message size limit of a Parser whose
// MaxMessageBytes is zero.
const DefaultMaxMessageBytes = 1 << 20

// Role says which side's frames a Parser reads.
type Role uint8

const (
	// ServerSide parses frames sent by clients: they must be masked.
	ServerSide Role = iota
	// ClientSide parses frames sent by servers: they must not be masked.
	ClientSide
)

// Message is a complete data message or control frame. Op is
// OpContinuation (zero) when Parse needs more bytes.
type Message struct {
	Op      OpCode
	Payload []byte
}

// Parser decodes a stream of frames incrementally (RFC 6455 sections 5 and
// 8): it takes bytes as they arrive and never blocks or asks for more than
// it has. The zero value parses client frames with DefaultMaxMessageBytes.
// A Parser is not safe for concurrent use.
type Parser struct {
	Role            Role
	MaxMessageBytes int // limit on one data message's payload, fragments included; zero means DefaultMaxMessageBytes

	err    error
	msg    *[]byte // pooled: payload of the data message being gathered
	ctl    *[]byte // pooled: payload of a control frame split across calls
	recyc  uint8   // buffers handed out by the last Parse, recycled by the next
	remain int64   // payload bytes of the current frame not yet seen
	flen   int64   // payload length of the current frame
	msgLen int64   // data message bytes so far, current frame's declared length included
	utf8   UTF8
	key    [4]byte
	keyPos uint8
	hdrN   uint8
	hdr    [MaxHeaderBytes]byte
	op     OpCode // current frame's opcode
	msgOp  OpCode // OpText or OpBinary while a data message is open
	fin    bool
	masked bool
	inBody bool // header decoded, payload pending
}

const (
	recycMsg = 1 << iota
	recycCtl
)

// Parse consumes bytes from data and returns after one complete data
// message or control frame (m.Op != 0), or when data is used up (n ==
// len(data), m.Op == 0). It unmasks data in place. m.Payload is valid only
// until the next Parse or Reset. After an error (a *ProtocolError) the
// Parser returns that error forever.
func (p *Parser) Parse(data []byte) (m Message, n int, err error) {
	if p.err != nil {
		return m, 0, p.err
	}
	p.recycle()
	for {
		if !p.inBody {
			k, err := p.readHeader(data[n:])
			n += k
			if err != nil {
				p.fail(err)
				return m, n, err
			}
			if !p.inBody {
				return m, n, nil // header incomplete: data is used up
			}
		}
		take := int(min(p.remain, int64(len(data)-n)))
		chunk := data[n : n+take]
		n += take
		p.remain -= int64(take)
		if p.masked {
			p.keyPos = uint8(Mask(chunk, p.key, int(p.keyPos)))
		}
		if p.op.IsControl() {
			payload := chunk
			if p.ctl != nil || p.remain > 0 {
				if p.ctl == nil {
					p.ctl = ctlPool.Get().(*[]byte)
				}
				*p.ctl = append(*p.ctl, chunk...)
				payload = *p.ctl
			}
			if p.remain > 0 {
				return m, n, nil
			}
			p.inBody = false
			if p.ctl != nil {
				p.recyc |= recycCtl
			}
			if p.op == OpClose {
				if _, _, err := ParseClosePayload(payload); err != nil {
					p.fail(err)
					return m, n, err
				}
			}
			return Message{Op: p.op, Payload: payload}, n, nil
		}
		if p.msgOp == OpText && !p.utf8.Write(chunk) {
			p.fail(ErrInvalidUTF8)
			return m, n, ErrInvalidUTF8
		}
		whole := p.fin && p.msg == nil && int64(take) == p.flen // the message is one frame, all in data
		if !whole {
			p.gather(chunk)
		}
		if p.remain > 0 {
			return m, n, nil
		}
		p.inBody = false
		if !p.fin {
			if n == len(data) {
				return m, n, nil
			}
			continue
		}
		if p.msgOp == OpText && !p.utf8.Complete() {
			p.fail(ErrInvalidUTF8)
			return m, n, ErrInvalidUTF8
		}
		m = Message{Op: p.msgOp, Payload: chunk}
		if !whole {
			m.Payload = *p.msg
			p.recyc |= recycMsg
		}
		p.msgOp, p.msgLen = 0, 0
		return m, n, nil
	}
}

// readHeader gathers and checks the next frame header from b, returning the
// bytes it consumed. p.inBody reports whether the header is complete.
func (p *Parser) readHeader(b []byte) (int, error) {
	var (
		h    header
		size int
		ok   bool
		err  error
		used int
	)
	if p.hdrN == 0 {
		h, size, ok, err = decodeHeader(b)
		if ok {
			used = size
		}
	} else {
		k := copy(p.hdr[p.hdrN:], b)
		h, size, ok, err = decodeHeader(p.hdr[:int(p.hdrN)+k])
		if ok {
			used = size - int(p.hdrN)
		}
	}
	if err != nil {
		return used, err
	}
	if !ok {
		p.hdrN += uint8(copy(p.hdr[p.hdrN:], b))
		return len(b), nil
	}
	p.hdrN = 0
	if err := p.check(h); err != nil {
		return used, err
	}
	p.op, p.fin, p.masked, p.key, p.keyPos = h.op, h.fin, h.masked, h.key, 0
	p.flen, p.remain, p.inBody = h.length, h.length, true
	return used, nil
}

// check applies the rules of sections 5.2-5.5 to a decoded header and opens
// or continues the data message.
func (p *Parser) check(h header) error {
	switch {
	case h.rsv != 0:
		return ErrReservedBits
	case !h.op.known():
		return ErrReservedOpCode
	case p.Role == ServerSide && !h.masked:
		return ErrUnmasked
	case p.Role == ClientSide && h.masked:
		return ErrMasked
	}
	if h.op.IsControl() {
		switch {
		case !h.fin:
			return ErrControlFragmented
		case h.length > MaxControlPayload:
			return ErrControlTooLong
		}
		return nil
	}
	switch {
	case h.op == OpContinuation && p.msgOp == 0:
		return ErrUnexpectedContinuation
	case h.op != OpContinuation && p.msgOp != 0:
		return ErrExpectedContinuation
	}
	if p.msgLen+h.length > int64(p.limit()) {
		return ErrMessageTooBig
	}
	if h.op != OpContinuation {
		p.msgOp, p.msgLen = h.op, 0
		p.utf8.Reset()
	}
	p.msgLen += h.length
	return nil
}

func (p *Parser) limit() int {
	if p.MaxMessageBytes > 0 {
		return p.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

// gather appends payload bytes of a data message to the pooled buffer,
// growing it only as bytes arrive.
func (p *Parser) gather(b []byte) {
	if p.msg == nil {
		p.msg = getBuf(len(b))
	}
	if need := len(*p.msg) + len(b); need > cap(*p.msg) {
		nb := getBuf(max(need, 2*cap(*p.msg)))
		*nb = append(*nb, *p.msg...)
		putBuf(p.msg)
		p.msg = nb
	}
	*p.msg = append(*p.msg, b...)
}

// recycle returns the buffers behind the last returned message.
func (p *Parser) recycle() {
	if p.recyc&recycMsg != 0 {
		putBuf(p.msg)
		p.msg = nil
	}
	if p.recyc&recycCtl != 0 {
		*p.ctl = (*p.ctl)[:0]
		ctlPool.Put(p.ctl)
		p.ctl = nil
	}
	p.recyc = 0
}

func (p *Parser) fail(err error) {
	p.err = err
	p.recycle()
}

// Reset drops all state, errors included, and returns pooled buffers.
func (p *Parser) Reset() {
	if p.msg != nil {
		putBuf(p.msg)
	}
	if p.ctl != nil {
		*p.ctl = (*p.ctl)[:0]
		ctlPool.Put(p.ctl)
	}
	*p = Parser{Role: p.Role, MaxMessageBytes: p.MaxMessageBytes}
}

// Idle reports whether p is between messages and holds no buffer.
func (p *Parser) Idle() bool {
	return !p.inBody && p.hdrN == 0 && p.msgOp == 0 && p.msg == nil && p.ctl == nil
}

var ctlPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxControlPayload); return &b }}

// Buffer size classes for gathered messages; larger ones are allocated to
// size and not pooled.
var bufClasses = [...]int{4 << 10, 64 << 10, 1 << 20}

var bufPools [len(bufClasses)]sync.Pool

func getBuf(n int) *[]byte {
	for i, c := range bufClasses {
		if n <= c {
			if b, ok := bufPools[i].Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, 0, c)
			return &b
		}
	}
	b := make([]byte, 0, n)
	return &b
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	for i, c := range bufClasses {
		if cap(*b) == c {
			*b = (*b)[:0]
			bufPools[i].Put(b)
			return
		}
	}
}
