// Package frame is Fanout's RFC 6455 codec: opcodes, close codes, header
// encoding, masking, UTF-8 validation, an incremental Parser for the frames a
// peer sends, and Prepared messages serialized once for many receivers. It
// does no I/O, starts no goroutines and logs nothing.
//
//	socket bytes ─▶ Parser.Parse(data) ─▶ Message{Op, Payload} | "need more" | *ProtocolError
//	                  │ unmasks in place, checks RSV/opcodes/control rules,
//	                  │ length against MaxMessageBytes before buffering,
//	                  │ UTF-8 of text as bytes arrive (fail fast)
//	                  ▼
//	            whole frame in data: Payload aliases data (no copy)
//	            split or fragmented: payload gathered in a pooled buffer,
//	            returned to the pool on the next Parse or Reset
//
// Buffer lifetimes: Parse modifies data (unmasking) and a returned Payload is
// only valid until the next Parse or Reset call. Between messages a Parser
// holds no buffer. Prepared bytes are immutable and may be shared.
package frame
