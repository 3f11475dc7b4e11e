package frame

import "strconv"

// OpCode is a frame's opcode (RFC 6455 section 5.2).
type OpCode byte

// Opcodes defined by RFC 6455 section 11.8. The others are reserved.
const (
	OpContinuation OpCode = 0x0
	OpText         OpCode = 0x1
	OpBinary       OpCode = 0x2
	OpClose        OpCode = 0x8
	OpPing         OpCode = 0x9
	OpPong         OpCode = 0xA
)

// IsControl reports whether o is a control opcode, one with the high bit of
// the nibble set (section 5.5).
func (o OpCode) IsControl() bool { return o&0x8 != 0 }

// known reports whether o is defined rather than reserved.
func (o OpCode) known() bool {
	switch o {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return true
	}
	return false
}

// String returns the opcode's lower-case name, such as "text", or
// "opcode(N)" for a reserved one.
func (o OpCode) String() string {
	switch o {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "opcode(" + strconv.Itoa(int(o)) + ")"
}
