package frame

// ProtocolError is a violation of RFC 6455 by the peer, with the close code
// section 7.4.1 prescribes for it. Reason is short ASCII that fits the
// payload of a close frame, so a caller may send it back as is.
type ProtocolError struct {
	Code   CloseCode
	Reason string
}

// Error returns "frame: " followed by e.Reason.
func (e *ProtocolError) Error() string { return "frame: " + e.Reason }

func protocolError(code CloseCode, reason string) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason}
}

// Errors returned by Parser.Parse and ParseClosePayload. Each is a
// *ProtocolError: callers compare with errors.Is and take the close code to
// send with errors.As. They must not be modified.
var (
	// ErrUnmasked: a ServerSide Parser read a frame without the mask bit
	// (section 5.1). Close code 1002.
	ErrUnmasked = protocolError(CloseProtocolError, "unmasked client frame")
	// ErrMasked: a ClientSide Parser read a frame with the mask bit set
	// (section 5.1). Close code 1002.
	ErrMasked = protocolError(CloseProtocolError, "masked server frame")
	// ErrReservedBits: RSV2 or RSV3 is set, which no extension Fanout
	// negotiates gives a meaning (section 5.2), or RSV1 is set where
	// permessage-deflate does not allow it: without the extension, on a
	// control frame or on a continuation frame (RFC 7692 section 6). Close
	// code 1002.
	ErrReservedBits = protocolError(CloseProtocolError, "reserved bits set")
	// ErrReservedOpCode: the opcode is one of 0x3-0x7 or 0xB-0xF (section
	// 5.2). Close code 1002.
	ErrReservedOpCode = protocolError(CloseProtocolError, "reserved opcode")
	// ErrControlTooLong: a close, ping or pong frame declares a payload over
	// MaxControlPayload bytes (section 5.5). Close code 1002.
	ErrControlTooLong = protocolError(CloseProtocolError, "control frame too long")
	// ErrControlFragmented: a close, ping or pong frame has FIN clear
	// (section 5.5). Close code 1002.
	ErrControlFragmented = protocolError(CloseProtocolError, "fragmented control frame")
	// ErrUnexpectedContinuation: a continuation frame arrives while no
	// fragmented message is open (section 5.4). Close code 1002.
	ErrUnexpectedContinuation = protocolError(CloseProtocolError, "continuation without a message")
	// ErrExpectedContinuation: a text or binary frame arrives while a
	// fragmented message is still open (section 5.4). Close code 1002.
	ErrExpectedContinuation = protocolError(CloseProtocolError, "expected continuation frame")
	// ErrLengthMSB: a 64-bit payload length has its most significant bit set
	// (section 5.2). Close code 1002.
	ErrLengthMSB = protocolError(CloseProtocolError, "payload length overflows")
	// ErrMessageTooBig: a frame's declared length, added to the bytes of the
	// message it continues, passes the Parser's MaxMessageBytes. It is
	// reported as soon as the header is complete, before any payload is read
	// (section 7.4.1). Close code 1009.
	ErrMessageTooBig = protocolError(CloseMessageTooBig, "message too big")
	// ErrInvalidUTF8: a text message, or the reason of a close frame, is not
	// valid UTF-8 (section 8.1). A text message fails at its first bad byte,
	// even mid-frame, or at its end if a sequence is left unfinished. Close
	// code 1007.
	ErrInvalidUTF8 = protocolError(CloseInvalidPayload, "invalid UTF-8")
	// ErrInflatedTooBig: a compressed message inflates past the Parser's
	// MaxMessageBytes. It is reported as soon as inflating passes the limit,
	// so memory never grows past it (a "zip bomb"). Close code 1009.
	ErrInflatedTooBig = protocolError(CloseMessageTooBig, "message too big once inflated")
	// ErrBadDeflate: a compressed message (RSV1) is not valid DEFLATE
	// data (RFC 7692 section 7.2.2). Close code 1007.
	ErrBadDeflate = protocolError(CloseInvalidPayload, "invalid compressed data")
	// ErrCloseLength: a close frame carries a payload of exactly one byte,
	// too short for a status code (section 5.5.1). Close code 1002.
	ErrCloseLength = protocolError(CloseProtocolError, "close payload of one byte")
	// ErrInvalidCloseCode: a close frame carries a status code that may not
	// be sent on the wire (section 7.4; see CloseCode.ValidOnWire). Close
	// code 1002.
	ErrInvalidCloseCode = protocolError(CloseProtocolError, "invalid close code")
)
