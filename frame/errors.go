package frame

// ProtocolError is a violation by the peer, with the close code RFC 6455
// section 7.4.1 prescribes for it. Reason is short ASCII that fits a close
// frame.
type ProtocolError struct {
	Code   CloseCode
	Reason string
}

func (e *ProtocolError) Error() string { return "frame: " + e.Reason }

func protocolError(code CloseCode, reason string) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason}
}

// Errors returned by Parser.Parse and ParseClosePayload. Each is a
// *ProtocolError carrying the close code to send.
var (
	// ErrUnmasked: a client frame without the mask bit (section 5.1), 1002.
	ErrUnmasked = protocolError(CloseProtocolError, "unmasked client frame")
	// ErrMasked: a server frame with the mask bit set (section 5.1), 1002.
	ErrMasked = protocolError(CloseProtocolError, "masked server frame")
	// ErrReservedBits: RSV1-3 set while no extension is negotiated (section 5.2), 1002.
	ErrReservedBits = protocolError(CloseProtocolError, "reserved bits set")
	// ErrReservedOpCode: opcodes 0x3-0x7 and 0xB-0xF (section 5.2), 1002.
	ErrReservedOpCode = protocolError(CloseProtocolError, "reserved opcode")
	// ErrControlTooLong: a control frame payload over 125 bytes (section 5.5), 1002.
	ErrControlTooLong = protocolError(CloseProtocolError, "control frame too long")
	// ErrControlFragmented: a control frame without FIN (section 5.5), 1002.
	ErrControlFragmented = protocolError(CloseProtocolError, "fragmented control frame")
	// ErrUnexpectedContinuation: a continuation frame with no message to continue (section 5.4), 1002.
	ErrUnexpectedContinuation = protocolError(CloseProtocolError, "continuation without a message")
	// ErrExpectedContinuation: a new text or binary frame inside a fragmented message (section 5.4), 1002.
	ErrExpectedContinuation = protocolError(CloseProtocolError, "expected continuation frame")
	// ErrLengthMSB: a 64-bit payload length with its most significant bit set (section 5.2), 1002.
	ErrLengthMSB = protocolError(CloseProtocolError, "payload length overflows")
	// ErrMessageTooBig: a message whose declared length passes MaxMessageBytes (section 7.4.1), 1009.
	ErrMessageTooBig = protocolError(CloseMessageTooBig, "message too big")
	// ErrInvalidUTF8: a text message or close reason that is not UTF-8 (section 8.1), 1007.
	ErrInvalidUTF8 = protocolError(CloseInvalidPayload, "invalid UTF-8")
	// ErrCloseLength: a close payload of one byte (section 5.5.1), 1002.
	ErrCloseLength = protocolError(CloseProtocolError, "close payload of one byte")
	// ErrInvalidCloseCode: a close code that may not be sent on the wire (section 7.4), 1002.
	ErrInvalidCloseCode = protocolError(CloseProtocolError, "invalid close code")
)
