// Package frame is Fanout's RFC 6455 codec: opcodes and close codes,
// frame headers, masking, incremental UTF-8 validation, an incremental
// Parser for the frames a peer sends, and Prepared messages serialized once
// for many receivers, with their permessage-deflate twins (RFC 7692). It
// does no I/O, starts no goroutines, logs nothing and imports only the
// standard library and klauspost/compress's flate.
//
// The data path, inbound and outbound:
//
//	socket read ─▶ data []byte ─▶ Parser.Parse(data) ─▶ Message{Op, Payload} | need more | *ProtocolError
//	                                │ header: RSV bits, opcode, mask bit, control rules (5.2-5.5),
//	                                │         declared length against MaxMessageBytes before buffering
//	                                │ payload: unmasked in place (5.3); text UTF-8 checked as it
//	                                │          arrives, failing at the first bad byte (8.1)
//	                                ▼
//	         payload wholly in data ──▶ Payload aliases data: no copy, no allocation
//	         split across reads, or ──▶ gathered in a pooled buffer that grows as bytes
//	         a fragmented message       arrive; a split control frame has its own buffer
//
//	broadcast ─▶ NewPrepared(op, payload) ─▶ one immutable frame ─▶ Bytes() written to every conn
//	                                          └─ Compressed(d): deflated once, on first use ─▶ written to
//	                                             every conn that negotiated permessage-deflate
//
//	RSV1 data message (Parser.Deflate) ─▶ inflated whole with a pooled inflater, bounded by
//	                                     MaxMessageBytes as it inflates, then UTF-8 checked
//
// Buffer lifetimes:
//
//   - Parse modifies data: it unmasks the payload in place.
//   - A Message's Payload is valid only until the next Parse or Reset call on
//     the same Parser. A caller that keeps it copies it.
//   - A pooled buffer goes back to its pool on the call after the message it
//     holds is returned (Parse(nil) will do), on an error, and on Reset. A
//     Parser between messages holds no buffer (Idle), so an idle connection
//     costs only the Parser struct.
//   - Prepared bytes are never modified after NewPrepared and may be written
//     to many connections at once.
//
// A Parser belongs to one connection and is not safe for concurrent use;
// Prepared values and the package functions are.
package frame
