package server

// A raw-socket conformance suite modelled on the Autobahn testsuite's
// sections 1-7 and 9. Client frames are built, and server frames read, with
// gobwas/ws, independently of frame/. Each case runs on /echo.

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
)

type wire struct {
	fin  bool
	op   ws.OpCode
	data []byte
	rsv  byte // RSV bits, 0..7
}

// expect is what the server must answer: frames in order, then (if
// closeCode != 0) a close frame with that code followed by TCP close.
type expect struct {
	frames    []wire
	closeCode frame.CloseCode
}

func encode(w wire) []byte {
	h := ws.Header{Fin: w.fin, OpCode: w.op, Masked: true, Length: int64(len(w.data)), Mask: ws.NewMask(), Rsv: w.rsv}
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	p := append([]byte(nil), w.data...)
	ws.Cipher(p, h.Mask, 0)
	return append(b.Bytes(), p...)
}

func msg(op ws.OpCode, data []byte) wire { return wire{fin: true, op: op, data: data} }
func text(s string) wire                 { return msg(ws.OpText, []byte(s)) }
func frag(op ws.OpCode, s string) wire   { return wire{op: op, data: []byte(s)} }
func closeFrame(code uint16, r string) wire {
	return msg(ws.OpClose, frame.AppendClosePayload(nil, frame.CloseCode(code), r))
}
func rawClose(p ...byte) wire { return msg(ws.OpClose, p) }

var conformance = []struct {
	section string
	name    string
	send    []wire
	chunk   int // write the stream in chunks of this many bytes (0: one write)
	want    expect
}{
	// 1. Framing: payload lengths around the 7/16/64-bit encodings.
	{"1.1", "text empty", []wire{text("")}, 0, expect{frames: []wire{text("")}}},
	{"1.1", "text 125", []wire{text(strings.Repeat("*", 125))}, 0, expect{frames: []wire{text(strings.Repeat("*", 125))}}},
	{"1.1", "text 126", []wire{text(strings.Repeat("*", 126))}, 0, expect{frames: []wire{text(strings.Repeat("*", 126))}}},
	{"1.1", "text 127", []wire{text(strings.Repeat("*", 127))}, 0, expect{frames: []wire{text(strings.Repeat("*", 127))}}},
	{"1.1", "text 65535", []wire{text(strings.Repeat("*", 65535-14))}, 0, expect{frames: []wire{text(strings.Repeat("*", 65535-14))}}},
	{"1.1", "text in 1-byte chunks", []wire{text(strings.Repeat("abc", 100))}, 1, expect{frames: []wire{text(strings.Repeat("abc", 100))}}},
	{"1.2", "binary 0", []wire{msg(ws.OpBinary, nil)}, 0, expect{frames: []wire{msg(ws.OpBinary, nil)}}},
	{"1.2", "binary 65537 is over the 64 KiB limit", []wire{msg(ws.OpBinary, make([]byte, 65537))}, 0, expect{closeCode: frame.CloseMessageTooBig}},
	{"1.2", "binary 60000 in 997-byte chunks", []wire{msg(ws.OpBinary, bytes.Repeat([]byte{0xfe}, 60000))}, 997, expect{frames: []wire{msg(ws.OpBinary, bytes.Repeat([]byte{0xfe}, 60000))}}},

	// 2. Pings and pongs.
	{"2.1", "ping empty", []wire{msg(ws.OpPing, nil)}, 0, expect{frames: []wire{msg(ws.OpPong, nil)}}},
	{"2.3", "ping binary payload", []wire{msg(ws.OpPing, []byte{0, 0xff, 0xfe, 0xfd})}, 0, expect{frames: []wire{msg(ws.OpPong, []byte{0, 0xff, 0xfe, 0xfd})}}},
	{"2.4", "ping 125", []wire{msg(ws.OpPing, bytes.Repeat([]byte("p"), 125))}, 0, expect{frames: []wire{msg(ws.OpPong, bytes.Repeat([]byte("p"), 125))}}},
	{"2.5", "ping 126 is too long", []wire{msg(ws.OpPing, bytes.Repeat([]byte("p"), 126))}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"2.6", "ping in 1-byte chunks", []wire{msg(ws.OpPing, []byte("slowly"))}, 1, expect{frames: []wire{msg(ws.OpPong, []byte("slowly"))}}},
	{"2.7", "unsolicited pong is ignored", []wire{msg(ws.OpPong, nil), text("after")}, 0, expect{frames: []wire{text("after")}}},
	{"2.10", "ten pings, ten pongs", func() []wire {
		var ws_ []wire
		for range 10 {
			ws_ = append(ws_, msg(ws.OpPing, []byte("x")))
		}
		return ws_
	}(), 0, expect{frames: func() []wire {
		var ws_ []wire
		for range 10 {
			ws_ = append(ws_, msg(ws.OpPong, []byte("x")))
		}
		return ws_
	}()}},

	// 3. Reserved bits (no extension is negotiated).
	{"3.1", "RSV1 on text", []wire{{fin: true, op: ws.OpText, data: []byte("x"), rsv: 4}}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"3.2", "RSV2 after a good message", []wire{text("ok"), {fin: true, op: ws.OpText, data: []byte("x"), rsv: 2}}, 0, expect{frames: []wire{text("ok")}, closeCode: frame.CloseProtocolError}},
	{"3.3", "RSV3 on ping", []wire{{fin: true, op: ws.OpPing, rsv: 1}}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"3.7", "all RSV on close", []wire{{fin: true, op: ws.OpClose, rsv: 7}}, 0, expect{closeCode: frame.CloseProtocolError}},

	// 4. Opcodes.
	{"4.1.1", "reserved data opcode 3", []wire{msg(3, nil)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"4.1.5", "reserved data opcode 7 after text", []wire{text("ok"), msg(7, []byte("x"))}, 0, expect{frames: []wire{text("ok")}, closeCode: frame.CloseProtocolError}},
	{"4.2.1", "reserved control opcode 0xB", []wire{msg(0xB, nil)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"4.2.5", "reserved control opcode 0xF", []wire{msg(0xF, []byte("x"))}, 0, expect{closeCode: frame.CloseProtocolError}},

	// 5. Fragmentation.
	{"5.1", "fragmented ping", []wire{{op: ws.OpPing, data: []byte("a")}, {fin: true, op: ws.OpContinuation, data: []byte("b")}}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"5.3", "text in two fragments", []wire{frag(ws.OpText, "frag"), {fin: true, op: ws.OpContinuation, data: []byte("ment")}}, 0, expect{frames: []wire{text("fragment")}}},
	{"5.6", "ping between fragments", []wire{frag(ws.OpText, "a"), msg(ws.OpPing, []byte("p")), {fin: true, op: ws.OpContinuation, data: []byte("b")}}, 0, expect{frames: []wire{msg(ws.OpPong, []byte("p")), text("ab")}}},
	{"5.8", "ping between fragments, 1-byte chunks", []wire{frag(ws.OpText, "a"), msg(ws.OpPing, []byte("p")), {fin: true, op: ws.OpContinuation, data: []byte("b")}}, 1, expect{frames: []wire{msg(ws.OpPong, []byte("p")), text("ab")}}},
	{"5.9", "continuation with nothing to continue", []wire{{fin: true, op: ws.OpContinuation, data: []byte("x")}}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"5.17", "new text inside a fragmented message", []wire{frag(ws.OpText, "a"), text("b")}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"5.19", "many fragments with pings", func() []wire {
		w := []wire{frag(ws.OpText, "0")}
		for i := 1; i < 9; i++ {
			w = append(w, frag(ws.OpContinuation, string(rune('0'+i))), msg(ws.OpPing, []byte{byte(i)}))
		}
		return append(w, wire{fin: true, op: ws.OpContinuation, data: []byte("9")})
	}(), 0, expect{frames: func() []wire {
		var w []wire
		for i := 1; i < 9; i++ {
			w = append(w, msg(ws.OpPong, []byte{byte(i)}))
		}
		return append(w, text("0123456789"))
	}()}},

	// 6. UTF-8.
	{"6.2", "valid multi-byte text", []wire{text("κόσμε € 𝄞")}, 0, expect{frames: []wire{text("κόσμε € 𝄞")}}},
	{"6.2", "code point split across fragments", []wire{frag(ws.OpText, "\xe2\x82"), {fin: true, op: ws.OpContinuation, data: []byte("\xac")}}, 0, expect{frames: []wire{text("€")}}},
	{"6.3", "invalid byte", []wire{text("ab\xffcd")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.4", "fail fast: invalid first fragment closes before the rest", []wire{frag(ws.OpText, "\xce\xba\xf4\x90")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.6", "surrogate half", []wire{text("\xed\xa0\x80")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.8", "overlong slash", []wire{text("\xc0\xaf")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.12", "truncated at message end", []wire{text("\xe2\x82")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.22", "max code point", []wire{text("\U0010ffff")}, 0, expect{frames: []wire{text("\U0010ffff")}}},
	{"6.23", "beyond U+10FFFF", []wire{text("\xf4\x90\x80\x80")}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"6.x", "binary is not UTF-8 checked", []wire{msg(ws.OpBinary, []byte{0xff, 0xfe})}, 0, expect{frames: []wire{msg(ws.OpBinary, []byte{0xff, 0xfe})}}},

	// 7. Close handling.
	{"7.1.1", "close after echo", []wire{text("hi"), closeFrame(1000, "")}, 0, expect{frames: []wire{text("hi")}, closeCode: frame.CloseNormal}},
	{"7.1.3", "data after close is ignored", []wire{closeFrame(1000, ""), text("ignored")}, 0, expect{closeCode: frame.CloseNormal}},
	{"7.3.1", "empty close payload", []wire{rawClose()}, 0, expect{closeCode: frame.CloseNoStatus}},
	{"7.3.2", "close payload of one byte", []wire{rawClose(0x03)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.3.4", "close with reason", []wire{closeFrame(1000, "bye")}, 0, expect{closeCode: frame.CloseNormal}},
	{"7.3.6", "close reason 123 bytes", []wire{closeFrame(1000, strings.Repeat("r", 123))}, 0, expect{closeCode: frame.CloseNormal}},
	{"7.5.1", "close reason not UTF-8", []wire{rawClose(0x03, 0xe8, 0xff)}, 0, expect{closeCode: frame.CloseInvalidPayload}},
	{"7.7", "application code 3000", []wire{closeFrame(3000, "")}, 0, expect{closeCode: 3000}},
	{"7.7", "private code 4999", []wire{closeFrame(4999, "")}, 0, expect{closeCode: 4999}},
	{"7.7", "code 1001", []wire{closeFrame(1001, "")}, 0, expect{closeCode: 1001}},
	{"7.9", "code 0", []wire{rawClose(0, 0)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 999", []wire{rawClose(0x03, 0xe7)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 1004", []wire{rawClose(0x03, 0xec)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 1005", []wire{rawClose(0x03, 0xed)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 1006", []wire{rawClose(0x03, 0xee)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 1016", []wire{rawClose(0x03, 0xf8)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.9", "code 2999", []wire{rawClose(0x0b, 0xb7)}, 0, expect{closeCode: frame.CloseProtocolError}},
	{"7.13", "code 5000", []wire{rawClose(0x13, 0x88)}, 0, expect{closeCode: frame.CloseProtocolError}},

	// 9. Limits and larger messages (the test server allows 64 KiB).
	{"9.1", "text 64 KiB minus header, in 64 fragments", func() []wire {
		var w []wire
		for i := range 64 {
			w = append(w, wire{fin: i == 63, op: map[bool]ws.OpCode{true: ws.OpText, false: ws.OpContinuation}[i == 0], data: bytes.Repeat([]byte("é"), 500)})
		}
		return w
	}(), 0, expect{frames: []wire{text(strings.Repeat("é", 500*64))}}},
	{"9.2", "declared length over the limit is refused before its payload", []wire{{fin: true, op: ws.OpBinary, data: make([]byte, 70000)}}, 0, expect{closeCode: frame.CloseMessageTooBig}},
	{"9.2", "fragments that add up past the limit", []wire{frag(ws.OpBinary, strings.Repeat("a", 40000)), {fin: true, op: ws.OpContinuation, data: bytes.Repeat([]byte("b"), 40000)}}, 0, expect{closeCode: frame.CloseMessageTooBig}},
	{"9.x", "unmasked client frame", nil, 0, expect{closeCode: frame.CloseProtocolError}}, // built in the runner
}

func TestConformance(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	for _, tc := range conformance {
		t.Run(tc.section+" "+tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.upgrade("/echo", nil)
			var stream []byte
			for _, w := range tc.send {
				stream = append(stream, encode(w)...)
			}
			if tc.send == nil { // unmasked frame
				stream = []byte{0x81, 0x02, 'h', 'i'}
			}
			if tc.chunk == 0 {
				c.send(stream)
			} else {
				for i := 0; i < len(stream); i += tc.chunk {
					c.send(stream[i:min(i+tc.chunk, len(stream))])
				}
			}
			for i, want := range tc.want.frames {
				h, p, err := c.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if h.OpCode != want.op || !h.Fin || !bytes.Equal(p, want.data) {
					t.Fatalf("frame %d: got %v fin=%v %q, want %v %q", i, h.OpCode, h.Fin, trim(p), want.op, trim(want.data))
				}
				if h.OpCode == ws.OpText && !utf8.Valid(p) {
					t.Fatalf("frame %d: server sent invalid UTF-8", i)
				}
			}
			if tc.want.closeCode != 0 {
				if got := c.expectClose(); got != tc.want.closeCode {
					t.Fatalf("close code %d, want %d", got, tc.want.closeCode)
				}
			}
		})
	}
}

func trim(p []byte) []byte {
	if len(p) > 40 {
		return append(p[:40:40], "..."...)
	}
	return p
}
