package frame

// DefaultParserMessageBytes is the message size limit of a Parser whose
// MaxMessageBytes is zero. The server sets its own limit on every Parser
// (server.DefaultParserMessageBytes, 64 KiB, unless configured).
const DefaultParserMessageBytes = 1 << 20

// Role says which side's frames a Parser reads (RFC 6455 section 5.1).
type Role uint8

const (
	// ServerSide parses frames sent by clients: they must be masked.
	ServerSide Role = iota
	// ClientSide parses frames sent by servers: they must not be masked.
	ClientSide
)

// String returns "server" or "client".
func (r Role) String() string {
	switch r {
	case ServerSide:
		return "server"
	case ClientSide:
		return "client"
	}
	return "role(?)"
}

// Message is a complete data message, its fragments joined, or a control
// frame. Op is OpContinuation (zero) when there is no message yet.
type Message struct {
	Op      OpCode
	Payload []byte // unmasked; valid only until the next Parse or Reset
}

// Parser decodes a stream of frames incrementally (RFC 6455 sections 5 and
// 8): it takes bytes as they are read and never blocks, waits or asks for
// more than it has. The zero value parses client frames with a limit of
// DefaultParserMessageBytes. Role and MaxMessageBytes are set before the first
// Parse. A Parser is not safe for concurrent use; it holds no buffer
// between messages, so an idle connection costs only the struct.
type Parser struct {
	// Role says whose frames are parsed, and so whether they are masked.
	Role Role
	// Deflate accepts messages compressed with permessage-deflate (RFC
	// 7692): RSV1 on the first frame of a data message. Set it once the
	// extension is negotiated with client_no_context_takeover: each message
	// is inflated on its own, with a pooled inflater, so nothing is kept
	// between messages. A compressed message's inflated size is limited by
	// MaxMessageBytes too; its text is UTF-8 checked once inflated.
	Deflate bool // next to Role: fills its padding, the Parser stays 96 bytes
	// DeferInflate makes Parse return a compressed data message as it
	// arrived, for the caller to inflate with Inflate or to drop: a rate
	// limit can then charge its bytes on the wire before paying for
	// inflating them. Its inflated size limit and UTF-8 check apply in
	// Inflate.
	DeferInflate bool
	// MaxMessageBytes limits the payload of one data message, all its
	// fragments together, in bytes. Each frame's declared length is checked
	// against it before any of its payload is buffered. Zero or negative
	// means DefaultParserMessageBytes. Control frames are limited to
	// MaxControlPayload instead.
	MaxMessageBytes int

	err    *ProtocolError // sticky: returned by every Parse after it
	msg    *[]byte        // pooled: data message gathered so far; nil while no byte is
	ctl    *[]byte        // pooled: control frame split across calls
	remain int64          // payload bytes of the current frame not yet consumed
	frames uint64         // headers accepted since the last Reset
	msgLen int64          // declared bytes of the open data message, current frame included
	utf8   UTF8           // validator of the open text message
	key    [4]byte        // current frame's masking key
	hdr    [MaxHeaderBytes]byte
	hdrN   uint8 // bytes of a split header held in hdr
	keyPos uint8 // offset into the payload, mod 4, for Mask
	op     OpCode
	msgOp  OpCode // OpText or OpBinary while a data message is open
	recyc  uint8  // buffers behind the last returned Message, released by the next call
	fin    bool
	masked bool
	inBody bool // header decoded, payload pending
	zipped bool // the open data message is compressed
	// inflateDue: the message the last Parse returned is still compressed
	inflateDue bool
}

// Bits of Parser.recyc.
const (
	recycMsg = 1 << iota
	recycCtl
)

// Parse consumes bytes from data and returns as soon as one complete data
// message or control frame is available (m.Op != 0), or when data is used
// up (n == len(data), m.Op == 0: more bytes are needed). The caller calls it
// again with data[n:] until data is empty.
//
// Parse unmasks data in place. When a message's whole payload lies in data,
// m.Payload is a subslice of data; otherwise it is a pooled buffer. Either
// way it is valid only until the next Parse or Reset call, which returns
// the buffer to its pool; Parse(nil) does only that.
//
// Pings, pongs and closes are returned like data messages: the caller
// answers pings and closes. A close frame's payload has been checked by
// ParseClosePayload. Control frames may arrive between the fragments of a
// data message (section 5.4).
//
// The error, when not nil, is a *ProtocolError carrying the close code to
// send. The Parser then stays failed: every later call returns the same
// error until Reset.
func (p *Parser) Parse(data []byte) (m Message, n int, err error) {
	if p.err != nil {
		return m, 0, p.err
	}
	p.recycle()
	p.inflateDue = false
	for {
		if !p.inBody {
			k, perr := p.readHeader(data[n:])
			n += k
			if perr != nil {
				return m, n, p.fail(perr)
			}
			if !p.inBody {
				return m, n, nil // the header is incomplete and data used up
			}
		}
		take := len(data) - n
		if int64(take) > p.remain {
			take = int(p.remain)
		}
		chunk := data[n : n+take : n+take] // a full slice: appending to a Payload cannot clobber the next frame
		n += take
		p.remain -= int64(take)
		if p.masked && take > 0 {
			p.keyPos = uint8(Mask(chunk, p.key, int(p.keyPos)))
		}
		if p.op.IsControl() {
			return p.control(chunk, n)
		}
		if p.msgOp == OpText && !p.zipped && !p.utf8.Write(chunk) {
			return m, n, p.fail(ErrInvalidUTF8) // fail fast, mid-frame if need be (section 8.1)
		}
		if p.remain > 0 || !p.fin {
			if take > 0 {
				p.gather(chunk)
			}
			if p.remain > 0 {
				return m, n, nil
			}
			p.inBody = false
			if n == len(data) {
				return m, n, nil
			}
			continue // the next fragment's header
		}
		p.inBody = false
		if p.msgOp == OpText && !p.zipped && !p.utf8.Complete() {
			return m, n, p.fail(ErrInvalidUTF8)
		}
		// msg is nil when no byte of the message came before chunk: then
		// chunk is the whole payload and is returned without a copy.
		m = Message{Op: p.msgOp, Payload: chunk}
		if p.msg != nil {
			p.gather(chunk)
			m.Payload = *p.msg
			p.recyc |= recycMsg
		}
		p.inflateDue = p.zipped
		p.msgOp, p.msgLen, p.zipped = 0, 0, false
		if !p.DeferInflate {
			return m, n, p.Inflate(&m)
		}
		return m, n, nil
	}
}

// control handles payload bytes of a control frame, which sections 5.4 and
// 5.5 allow between the fragments of a data message: its bytes, when split,
// are kept apart from the message's.
func (p *Parser) control(chunk []byte, n int) (Message, int, error) {
	payload := chunk
	if p.ctl != nil || (p.remain > 0 && len(chunk) > 0) {
		if p.ctl == nil {
			p.ctl = getControl()
		}
		*p.ctl = append(*p.ctl, chunk...)
		payload = *p.ctl
	}
	if p.remain > 0 {
		return Message{}, n, nil
	}
	p.inBody = false
	if p.ctl != nil {
		p.recyc |= recycCtl
	}
	if p.op == OpClose {
		if _, _, err := parseClose(payload); err != nil {
			return Message{}, n, p.fail(err)
		}
	}
	return Message{Op: p.op, Payload: payload}, n, nil
}

// readHeader decodes and checks the next frame header from b, keeping the
// bytes of a header split across calls in p.hdr. It returns the bytes it
// consumed; p.inBody reports whether the header is complete.
func (p *Parser) readHeader(b []byte) (int, *ProtocolError) {
	src := b
	if p.hdrN > 0 {
		k := copy(p.hdr[p.hdrN:], b)
		src = p.hdr[:int(p.hdrN)+k]
	}
	h, size, ok, err := decodeHeader(src)
	if !ok {
		// All of b fits: the header is longer than what is held.
		p.hdrN += uint8(copy(p.hdr[p.hdrN:], b))
		return len(b), nil
	}
	used := size - int(p.hdrN)
	p.hdrN = 0
	if err != nil {
		return used, err
	}
	if err := p.check(&h); err != nil {
		return used, err
	}
	p.op, p.fin, p.masked, p.key, p.keyPos = h.op, h.fin, h.masked, h.key, 0
	p.remain, p.inBody = h.length, true
	p.frames++
	return used, nil
}

// Frames is the number of frames whose header Parse has accepted since the
// last Reset: data frames (each fragment of a message) and control frames.
// Rate limits charge frames with it, since a message's fragments and the
// control frames between them never surface one by one.
func (p *Parser) Frames() uint64 { return p.frames }

// check applies the rules of sections 5.1-5.5 to a decoded header, and the
// size limit, then opens or continues the data message.
func (p *Parser) check(h *header) *ProtocolError {
	switch {
	case h.rsv != 0 && (h.rsv != bitRsv1>>4 || !p.Deflate || h.op.IsControl() || h.op == OpContinuation):
		return ErrReservedBits
	case !h.op.known():
		return ErrReservedOpCode
	case p.Role == ServerSide && !h.masked:
		return ErrUnmasked
	case p.Role != ServerSide && h.masked:
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
	// msgLen (zero for a new message) never passes the limit, so this
	// subtraction cannot overflow where adding a huge declared length would.
	if h.length > int64(p.limit())-p.msgLen {
		return ErrMessageTooBig
	}
	if h.op != OpContinuation {
		p.msgOp = h.op
		p.zipped = h.rsv != 0
		p.utf8.Reset()
	}
	p.msgLen += h.length
	return nil
}

func (p *Parser) limit() int {
	if p.MaxMessageBytes > 0 {
		return p.MaxMessageBytes
	}
	return DefaultParserMessageBytes
}

// gather appends payload bytes of a data message to its pooled buffer. The
// buffer grows only as bytes arrive, at most doubling, and never past the
// length the message has declared so far: a declared length alone never
// allocates.
func (p *Parser) gather(b []byte) {
	if p.msg == nil {
		p.msg = getBuf(len(b))
	} else if need := len(*p.msg) + len(b); need > cap(*p.msg) {
		grow := int(min(2*int64(cap(*p.msg)), p.msgLen))
		nb := getBuf(max(need, grow))
		*nb = append(*nb, *p.msg...)
		putBuf(p.msg)
		p.msg = nb
	}
	*p.msg = append(*p.msg, b...)
}

// Inflate replaces the payload of m, the message that the last Parse
// returned, with its inflated bytes (RFC 7692 section 7.2.2) when it came
// compressed, in a pooled buffer valid until the next Parse or Reset; any
// other message is left alone. A payload that is not valid DEFLATE,
// inflates past MaxMessageBytes or, for text, is not UTF-8 gives a
// *ProtocolError, and the Parser stays failed as after a Parse error.
func (p *Parser) Inflate(m *Message) error {
	if !p.inflateDue {
		return nil
	}
	p.inflateDue = false
	if err := p.inflate(m); err != nil {
		*m = Message{}
		return p.fail(err)
	}
	return nil
}

// inflate replaces m's compressed payload with its inflated bytes, in a
// pooled buffer that recycle returns like a gathered message's.
func (p *Parser) inflate(m *Message) *ProtocolError {
	out, err := inflate(m.Payload, p.limit())
	if err != nil {
		return err
	}

	if p.msg != nil {
		putBuf(p.msg)
	}
	p.msg = out
	p.recyc |= recycMsg
	m.Payload = *out
	if m.Op == OpText {
		var u UTF8
		if !u.Write(m.Payload) || !u.Complete() {
			return ErrInvalidUTF8
		}
	}
	return nil
}

// recycle returns the buffers behind the last returned message.
func (p *Parser) recycle() {
	if p.recyc == 0 {
		return
	}
	if p.recyc&recycMsg != 0 {
		putBuf(p.msg)
		p.msg = nil
	}
	if p.recyc&recycCtl != 0 {
		putControl(p.ctl)
		p.ctl = nil
	}
	p.recyc = 0
}

// release returns every buffer p holds.
func (p *Parser) release() {
	if p.msg != nil {
		putBuf(p.msg)
		p.msg = nil
	}
	if p.ctl != nil {
		putControl(p.ctl)
		p.ctl = nil
	}
	p.recyc = 0
}

// fail makes err sticky and drops the buffers: nothing will use them.
func (p *Parser) fail(err *ProtocolError) error {
	p.err = err
	p.release()
	return err
}

// Reset drops all state, an error included, and returns pooled buffers; a
// Payload returned before is no longer valid. Role, MaxMessageBytes,
// Deflate and DeferInflate are kept.
func (p *Parser) Reset() {
	p.release()
	*p = Parser{Role: p.Role, MaxMessageBytes: p.MaxMessageBytes, Deflate: p.Deflate, DeferInflate: p.DeferInflate}
}

// Idle reports whether p is between messages and holds no buffer: no
// partial header, frame or fragmented message, no error, and the buffer of
// the last returned Message, if any, released (by a Parse call, Parse(nil)
// for instance, or Reset).
func (p *Parser) Idle() bool {
	return p.err == nil && !p.inBody && p.hdrN == 0 && p.msgOp == 0 && p.msg == nil && p.ctl == nil
}
