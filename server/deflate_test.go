package server

// permessage-deflate (RFC 7692) cases modelled on the Autobahn testsuite's
// sections 12 (compressed echo of many sizes) and 13 (each parameter
// combination), plus the failure cases of RFC 7692 section 6. Client
// frames are compressed, and server frames inflated, with compress/flate
// and gobwas/ws, independently of frame/.

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

const deflateOffer = "permessage-deflate; client_max_window_bits"

// deflateMsg compresses p as one RFC 7692 message without context takeover.
func deflateMsg(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// inflateMsg reverses deflateMsg.
func inflateMsg(z []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
	return io.ReadAll(r)
}

// jsonOf is a JSON message of about n bytes, as a feed sends.
func jsonOf(n int) []byte {
	b := []byte(`{"channel":"scores","data":[`)
	for i := 0; len(b) < n-2; i++ {
		b = fmt.Appendf(b, `{"team":"t%d","score":%d},`, i%40, i*7%101)
	}
	return append(b[:len(b)-1], "]}"...)[:n]
}

// upgradeOffer upgrades c on path with the given Sec-WebSocket-Extensions
// header ("" for none) and returns the extensions the server answered,
// spaces removed.
func (c *rawClient) upgradeOffer(path, offer string) string {
	c.t.Helper()
	req := strings.TrimSuffix(upgradeRequest(path), "\r\n")
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	c.send([]byte(req + "\r\n"))
	status, h := c.readResponse()
	if status != http.StatusSwitchingProtocols {
		c.t.Fatalf("upgrade status %d", status)
	}
	return strings.ReplaceAll(h.Get("Sec-WebSocket-Extensions"), " ", "")
}

// zwire is a client frame with RSV1 set (compressed) or not.
func zwire(fin bool, op ws.OpCode, data []byte, rsv1 bool) []byte {
	w := wire{fin: fin, op: op, data: data}
	if rsv1 {
		w.rsv = 4
	}
	return encode(w)
}

// nextMessage reads one server data message and inflates it if RSV1 is set.
func (c *rawClient) nextMessage() (op ws.OpCode, p []byte, compressed bool) {
	c.t.Helper()
	h, p, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if !h.Fin {
		c.t.Fatal("server fragmented a message")
	}
	if h.Rsv&3 != 0 || (h.Rsv != 0 && h.OpCode.IsControl()) {
		c.t.Fatalf("server frame %v with RSV bits %03b", h.OpCode, h.Rsv)
	}
	if h.Rsv == 4 {
		if p, err = inflateMsg(p); err != nil {
			c.t.Fatalf("inflate the server's frame: %v", err)
		}
	}
	return h.OpCode, p, h.Rsv == 4
}

// Autobahn 12.x: compressed echo of text and binary messages of many sizes;
// the server answers compressed from CompressionMinBytes on.
func TestDeflate_Echo(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
		for _, n := range []int{0, 16, 64, 255, 256, 1024, 4096, 16384, 65536} {
			t.Run(fmt.Sprintf("%v/%d", op, n), func(t *testing.T) {
				t.Parallel()
				c := dialRaw(t, addr)
				if got := c.upgradeOffer("/echo", deflateOffer); got != "permessage-deflate;server_no_context_takeover;client_no_context_takeover" {
					t.Fatalf("extensions %q", got)
				}
				payload := jsonOf(n)
				for range 3 { // no context is carried from one message to the next
					c.send(zwire(true, op, deflateMsg(payload), true))
					gotOp, got, compressed := c.nextMessage()
					if gotOp != op || !bytes.Equal(got, payload) {
						t.Fatalf("echo %v of %d bytes, want %v of %d", gotOp, len(got), op, n)
					}
					if want := n >= DefaultCompressionMinBytes; compressed != want {
						t.Fatalf("echo compressed %v, want %v", compressed, want)
					}
				}
			})
		}
	}
}

// Autobahn 12.x/13.x: fragmented compressed messages, in any chunking,
// with a ping between fragments and plain messages between compressed ones.
func TestDeflate_Fragmented(t *testing.T) {
	t.Parallel()
	_, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	payload := jsonOf(20000)
	z := deflateMsg(payload)
	var stream []byte
	for i, size := 0, 1; i < len(z); i, size = i+size, size+97 { // fragments of 1, 98, 195... bytes
		end := min(i+size, len(z))
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		stream = append(stream, zwire(end == len(z), op, z[i:end], i == 0)...)
		if i == 0 {
			stream = append(stream, encode(msg(ws.OpPing, []byte("mid")))...)
		}
	}
	stream = append(stream, encode(text("plain"))...)
	for _, chunk := range []int{0, 1, 333} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.upgradeOffer("/echo", deflateOffer)
			if chunk == 0 {
				c.send(stream)
			} else {
				for i := 0; i < len(stream); i += chunk {
					c.send(stream[i:min(i+chunk, len(stream))])
				}
			}
			if op, p, _ := c.nextMessage(); op != ws.OpPong || string(p) != "mid" {
				t.Fatalf("got %v %q, want the pong", op, p)
			}
			if op, p, compressed := c.nextMessage(); op != ws.OpText || !bytes.Equal(p, payload) || !compressed {
				t.Fatalf("got %v of %d bytes (compressed %v)", op, len(p), compressed)
			}
			if op, p, compressed := c.nextMessage(); op != ws.OpText || string(p) != "plain" || compressed {
				t.Fatalf("got %v %q (compressed %v)", op, p, compressed)
			}
		})
	}
}

// Autobahn 13.x: each parameter combination of an offer gets the answer
// RFC 7692 allows, and the server keeps to it.
func TestDeflate_Negotiation(t *testing.T) {
	t.Parallel()
	const both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	_, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	_, offAddr := runServer(t, Config{MaxMessageBytes: 64 << 10, Compression: CompressionOff})
	for _, tc := range []struct {
		name, offer, want string
		off               bool
		plainAbove        int // a server_max_window_bits window: longer echoes go plain
	}{
		{name: "bare (Firefox)", offer: "permessage-deflate", want: both},
		{name: "client_max_window_bits (Chromium, Node ws)", offer: "permessage-deflate; client_max_window_bits", want: both},
		{name: "client_max_window_bits=10", offer: "permessage-deflate; client_max_window_bits=10", want: both},
		{name: "client_no_context_takeover", offer: "permessage-deflate; client_no_context_takeover", want: both},
		{name: "server_no_context_takeover", offer: "permessage-deflate; server_no_context_takeover", want: both},
		{name: "all four", offer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15; client_max_window_bits=15",
			want: both + "; server_max_window_bits=15"},
		{name: "server_max_window_bits=12 (Python websockets)", offer: "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
			want: both + "; server_max_window_bits=12", plainAbove: 1 << 12},
		{name: "server_max_window_bits=9", offer: "permessage-deflate; server_max_window_bits=9", want: both + "; server_max_window_bits=9", plainAbove: 1 << 9},
		{name: "unknown parameter is declined", offer: "permessage-deflate; foo=1"},
		{name: "server_max_window_bits without value is declined", offer: "permessage-deflate; server_max_window_bits"},
		{name: "server_max_window_bits=7 is declined", offer: "permessage-deflate; server_max_window_bits=7"},
		{name: "server_max_window_bits=16 is declined", offer: "permessage-deflate; server_max_window_bits=16"},
		{name: "client_max_window_bits=abc is declined", offer: "permessage-deflate; client_max_window_bits=abc"},
		{name: "duplicate parameter is declined", offer: "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11"},
		{name: "server_no_context_takeover with a value is declined", offer: "permessage-deflate; server_no_context_takeover=1"},
		{name: "a declined offer falls back to the next", offer: "permessage-deflate; foo, permessage-deflate; server_max_window_bits=10",
			want: both + "; server_max_window_bits=10", plainAbove: 1 << 10},
		{name: "first acceptable offer wins", offer: "permessage-deflate, permessage-deflate; server_max_window_bits=10", want: both},
		{name: "unknown extension is ignored", offer: "x-webkit-deflate-frame"},
		{name: "Compression off", offer: "permessage-deflate", off: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := addr
			if tc.off {
				a = offAddr
			}
			c := dialRaw(t, a)
			if got, want := c.upgradeOffer("/echo", tc.offer), strings.ReplaceAll(tc.want, " ", ""); got != want {
				t.Fatalf("extensions %q, want %q", got, tc.want)
			}
			if tc.want == "" { // not negotiated: RSV1 is a protocol error
				c.send(encode(text(strings.Repeat("x", 1000))))
				if _, _, compressed := c.nextMessage(); compressed {
					t.Fatal("compressed frame without the extension")
				}
				c.send(zwire(true, ws.OpText, deflateMsg([]byte("hi")), true))
				if code := c.expectClose(); code != frame.CloseProtocolError {
					t.Fatalf("close %d, want 1002", code)
				}
				return
			}
			for _, n := range []int{1000, 2000, 5000} {
				payload := jsonOf(n)
				c.send(zwire(true, ws.OpText, deflateMsg(payload), true))
				_, got, compressed := c.nextMessage()
				if !bytes.Equal(got, payload) {
					t.Fatalf("echo of %d bytes differs", n)
				}
				if want := tc.plainAbove == 0 || n <= tc.plainAbove; compressed != want {
					t.Fatalf("echo of %d bytes compressed %v, want %v", n, compressed, want)
				}
			}
		})
	}
}

// RFC 7692 section 6 and 7.2.2 failures: each closes with its code.
func TestDeflate_Failures(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	for _, tc := range []struct {
		name    string
		stream  []byte
		code    frame.CloseCode
		inflate bool // counted as an inflate error
	}{
		{"RSV1 on a continuation", cat(zwire(false, ws.OpText, []byte("a"), false), zwire(true, ws.OpContinuation, []byte("b"), true)), frame.CloseProtocolError, false},
		{"RSV1 on a ping", zwire(true, ws.OpPing, nil, true), frame.CloseProtocolError, false},
		{"RSV1 on a close", zwire(true, ws.OpClose, []byte{3, 0xe8}, true), frame.CloseProtocolError, false},
		{"RSV2 on a text frame", encode(wire{fin: true, op: ws.OpText, data: []byte("a"), rsv: 2}), frame.CloseProtocolError, false},
		{"RSV1 and RSV3", encode(wire{fin: true, op: ws.OpText, data: deflateMsg([]byte("a")), rsv: 5}), frame.CloseProtocolError, false},
		{"invalid DEFLATE", zwire(true, ws.OpBinary, []byte{0xff, 0xfe, 0xfd, 0xfc}, true), frame.CloseInvalidPayload, true},
		{"zip bomb: 8 KiB inflating to 16 MiB", zwire(true, ws.OpBinary, deflateMsg(make([]byte, 16<<20)), true), frame.CloseMessageTooBig, true},
		{"invalid UTF-8 once inflated", zwire(true, ws.OpText, deflateMsg([]byte("ok\xc0\xaf")), true), frame.CloseInvalidPayload, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.upgradeOffer("/echo", deflateOffer)
			c.send(tc.stream)
			if code := c.expectClose(); code != tc.code {
				t.Fatalf("close %d, want %d", code, tc.code)
			}
		})
	}
	t.Cleanup(func() {
		if got := s.Stats().InflateErrors; got != 2 {
			t.Errorf("InflateErrors %d, want 2", got)
		}
	})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A broadcast is compressed once, whatever the number of receivers that
// negotiated compression; those that did not get the plain frame.
func TestDeflate_BroadcastCompressedOnce(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MaxMessageBytes: 64 << 10})
	hub := onlyHub(t, s)
	const zipped, plain, msgs = 20, 5, 10
	var clients []*rawClient
	for i := range zipped + plain {
		c := dialRaw(t, addr)
		offer := deflateOffer
		if i >= zipped {
			offer = ""
		}
		c.upgradeOffer("/ws", offer)
		clients = append(clients, c)
	}
	eventually(t, 5*time.Second, func() error {
		if n := hub.Len(); n != zipped+plain {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	before := s.Stats()
	for i := range msgs {
		hub.Broadcast(frame.OpText, jsonOf(1000+i))
	}
	for i, c := range clients {
		for k := range msgs {
			op, p, compressed := c.nextMessage()
			if op != ws.OpText || !bytes.Equal(p, jsonOf(1000+k)) {
				t.Fatalf("client %d message %d: %v of %d bytes", i, k, op, len(p))
			}
			if compressed != (i < zipped) {
				t.Fatalf("client %d message %d compressed %v", i, k, compressed)
			}
		}
	}
	st := s.Stats()
	if calls := st.CompressCalls - before.CompressCalls; calls != msgs {
		t.Fatalf("%d compress calls for %d broadcasts to %d compressed receivers, want %d", calls, msgs, zipped, msgs)
	}
	if in, out := st.CompressBytesIn-before.CompressBytesIn, st.CompressBytesOut-before.CompressBytesOut; out == 0 || out*2 > in {
		t.Fatalf("compressed %d bytes to %d, want at least 2x smaller", in, out)
	}
	if st.CompressedConns < zipped {
		t.Fatalf("CompressedConns %d, want at least %d", st.CompressedConns, zipped)
	}
}

// -byte-rate is charged for a compressed message's bytes as they arrived
// before it is inflated: over the rate it is dropped uninflated, so a
// client cannot make the server inflate faster than the rate (a small frame
// may inflate to MaxMessageBytes). Here a bomb sent with the bucket empty is
// dropped, not inflated (which would close the connection with 1009).
func TestDeflate_ByteRateChargedBeforeInflating(t *testing.T) {
	t.Parallel()
	s, addr := runServer(t, Config{MaxMessageBytes: 64 << 10, ByteRate: 100})
	d := websocket.Dialer{EnableCompression: true}
	c, resp, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("extensions %q", ext)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	full := make([]byte, 64<<10) // the whole burst: inflating it empties the bucket
	if err := c.WriteMessage(websocket.BinaryMessage, full); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || len(got) != len(full) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20)); err != nil { // ~1 KB on the wire
		t.Fatal(err)
	}
	pong := make(chan struct{}, 1)
	c.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadMessage()
		read <- err
	}()
	select {
	case <-pong:
	case err := <-read:
		t.Fatalf("after a bomb over the rate: %v, want it dropped and a pong", err)
	}
	if st := s.Stats(); st.InflateErrors != 0 || st.RateLimited != 1 {
		t.Fatalf("inflate errors %d, rate limited %d: want the bomb dropped uninflated", st.InflateErrors, st.RateLimited)
	}
}
