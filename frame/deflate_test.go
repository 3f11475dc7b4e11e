package frame

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// stdDeflate compresses payload as an RFC 7692 message with the standard
// library, an implementation independent of the one frame uses.
func stdDeflate(payload []byte) []byte {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, stdflate.BestCompression)
	_, _ = w.Write(payload)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte(deflateTail))
}

// stdInflate is inflate's oracle: the standard library over the same bytes.
func stdInflate(z []byte, limit int) ([]byte, error) {
	r := stdflate.NewReader(io.MultiReader(bytes.NewReader(z), strings.NewReader(deflateTail+finalBlock)))
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err == nil && len(out) > limit {
		err = ErrInflatedTooBig
	}
	return out, err
}

// compressedClientFrame is a masked client frame with RSV1 set.
func compressedClientFrame(fin bool, op OpCode, z []byte) []byte {
	b := clientFrame(fin, op, z)
	b[0] |= bitRsv1
	return b
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestPrepared_CompressedRoundTrip(t *testing.T) {
	t.Parallel()
	d := &Deflater{MinBytes: 64}
	for _, tc := range []struct {
		name       string
		op         OpCode
		payload    []byte
		compressed bool
	}{
		{"json 1KiB", OpText, tickJSON(1024), true},
		{"json 64KiB", OpText, tickJSON(64 << 10), true},
		{"zeros 200KiB", OpBinary, make([]byte, 200<<10), true},
		{"under MinBytes", OpText, []byte(`{"a":1}`), false},
		{"random does not shrink", OpBinary, randomBytes(4096, 1), false},
		{"control frame", OpPing, rep('a', 100), false},
		{"empty", OpText, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPrepared(tc.op, tc.payload)
			z := p.Compressed(d)
			if got := z[0]&bitRsv1 != 0; got != tc.compressed {
				t.Fatalf("RSV1 %v, want %v", got, tc.compressed)
			}
			if !tc.compressed {
				if !bytes.Equal(z, p.Bytes()) {
					t.Fatal("an uncompressed twin differs from Bytes")
				}
				return
			}
			if len(z) >= p.Len() {
				t.Fatalf("compressed frame of %d bytes, plain %d", len(z), p.Len())
			}
			cp := &Parser{Role: ClientSide, MaxMessageBytes: 1 << 20, Deflate: true}
			msgs, err := parseAll(cp, bytes.Clone(z), nil)
			if err != nil || len(msgs) != 1 || msgs[0].Op != tc.op || !bytes.Equal(msgs[0].Payload, tc.payload) {
				t.Fatalf("parsed back %d messages: %v", len(msgs), err)
			}
			h, size, _, _ := decodeHeader(z)
			if got, err := stdInflate(z[size:size+int(h.length)], 1<<20); err != nil || !bytes.Equal(got, tc.payload) {
				t.Fatalf("compress/flate inflates it to %d bytes: %v", len(got), err)
			}
		})
	}
}

// A broadcast is compressed once however many receivers ask at once.
func TestPrepared_CompressedOnce(t *testing.T) {
	t.Parallel()
	d := &Deflater{}
	msg := tickJSON(1024)
	p := NewPrepared(OpText, msg)
	var wg sync.WaitGroup
	frames := make([][]byte, 16)
	for i := range frames {
		wg.Go(func() { frames[i] = p.Compressed(d) })
	}
	wg.Wait()
	for _, f := range frames {
		if &f[0] != &frames[0][0] {
			t.Fatal("receivers got different compressed frames")
		}
	}
	if s := d.Stats(); s.Calls != 1 || s.BytesIn != uint64(len(msg)) || s.BytesOut == 0 || s.BytesOut >= s.BytesIn/2 {
		t.Fatalf("stats %+v, want one call and a 2x smaller message", s)
	}
}

func TestParser_Deflate(t *testing.T) {
	t.Parallel()
	json := tickJSON(3000)
	z := stdDeflate(json)
	half := len(z) / 2
	bomb := stdDeflate(make([]byte, 10<<20))
	for _, tc := range []struct {
		name    string
		off     bool // the extension was not negotiated
		stream  []byte
		want    []Message
		wantErr error
	}{
		{name: "text", stream: compressedClientFrame(true, OpText, z), want: []Message{{OpText, json}}},
		{name: "binary", stream: compressedClientFrame(true, OpBinary, z), want: []Message{{OpBinary, json}}},
		{name: "fragmented with a ping between", stream: cat(
			compressedClientFrame(false, OpText, z[:half]),
			clientFrame(true, OpPing, []byte("p")),
			clientFrame(true, OpContinuation, z[half:])),
			want: []Message{{OpPing, []byte("p")}, {OpText, json}}},
		{name: "empty compressed message", stream: compressedClientFrame(true, OpText, []byte{0}), want: []Message{{OpText, nil}}},
		{name: "plain then compressed", stream: cat(clientFrame(true, OpText, []byte("hi")), compressedClientFrame(true, OpText, z)),
			want: []Message{{OpText, []byte("hi")}, {OpText, json}}},
		{name: "RSV1 without the extension", off: true, stream: compressedClientFrame(true, OpText, z), wantErr: ErrReservedBits},
		{name: "RSV1 on a continuation", stream: cat(clientFrame(false, OpText, []byte("a")), compressedClientFrame(true, OpContinuation, []byte("b"))), wantErr: ErrReservedBits},
		{name: "RSV1 on a ping", stream: compressedClientFrame(true, OpPing, nil), wantErr: ErrReservedBits},
		{name: "RSV1 on a close", stream: compressedClientFrame(true, OpClose, nil), wantErr: ErrReservedBits},
		{name: "RSV2", stream: func() []byte { b := clientFrame(true, OpText, []byte("a")); b[0] |= 0x20; return b }(), wantErr: ErrReservedBits},
		{name: "RSV1 and RSV3", stream: func() []byte { b := compressedClientFrame(true, OpText, z); b[0] |= 0x10; return b }(), wantErr: ErrReservedBits},
		{name: "not deflate", stream: compressedClientFrame(true, OpText, []byte{0xff, 0xff, 0xff}), wantErr: ErrBadDeflate},
		{name: "zip bomb", stream: compressedClientFrame(true, OpBinary, bomb), wantErr: ErrInflatedTooBig},
		{name: "invalid UTF-8 inside", stream: compressedClientFrame(true, OpText, stdDeflate([]byte("ok \xff"))), wantErr: ErrInvalidUTF8},
		{name: "UTF-8 split by a fragment boundary", stream: func() []byte {
			zz := stdDeflate([]byte("€€€€"))
			return cat(compressedClientFrame(false, OpText, zz[:1]), clientFrame(true, OpContinuation, zz[1:]))
		}(), want: []Message{{OpText, []byte("€€€€")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, chunk := range []int{0, 1, 7, -1} { // -1: whole, DeferInflate
				p := &Parser{MaxMessageBytes: 1 << 16, Deflate: !tc.off, DeferInflate: chunk < 0}
				var chunks func() int
				if chunk > 0 {
					chunks = func() int { return chunk }
				}
				got, err := parseAll(p, bytes.Clone(tc.stream), chunks)
				if err != tc.wantErr {
					t.Fatalf("chunk %d: error %v, want %v", chunk, err, tc.wantErr)
				}
				if i, ok := sameMessages(got, tc.want); !ok {
					t.Fatalf("chunk %d: %d messages, want %d; first difference at %d", chunk, len(got), len(tc.want), i)
				}
				p.Parse(nil)
				if err == nil && !p.Idle() {
					t.Fatalf("chunk %d: parser not idle after the last message", chunk)
				}
			}
		})
	}
}

// With DeferInflate, Parse returns a compressed message as it arrived and
// Inflate inflates it, with the limits Parse applies otherwise.
func TestParser_DeferInflate(t *testing.T) {
	t.Parallel()
	json := tickJSON(3000)
	z := stdDeflate(json)
	p := &Parser{MaxMessageBytes: 1 << 16, Deflate: true, DeferInflate: true}
	stream := cat(compressedClientFrame(true, OpText, z), clientFrame(true, OpText, []byte("plain")),
		compressedClientFrame(true, OpBinary, stdDeflate(make([]byte, 1<<17))))
	m, n, err := p.Parse(stream)
	if err != nil || !bytes.Equal(m.Payload, z) {
		t.Fatalf("Parse: %d bytes, %v; want the %d compressed ones", len(m.Payload), err, len(z))
	}
	if err := p.Inflate(&m); err != nil || !bytes.Equal(m.Payload, json) {
		t.Fatalf("Inflate: %d bytes, %v; want %d", len(m.Payload), err, len(json))
	}
	if err := p.Inflate(&m); err != nil || !bytes.Equal(m.Payload, json) {
		t.Fatalf("a second Inflate changed the message: %v", err)
	}
	stream = stream[n:]
	m, n, err = p.Parse(stream)
	if err != nil || p.Inflate(&m) != nil || string(m.Payload) != "plain" {
		t.Fatalf("plain message: %q, %v", m.Payload, err)
	}
	if m, _, err = p.Parse(stream[n:]); err != nil || len(m.Payload) > 1<<10 {
		t.Fatalf("a bomb is not inflated by Parse: %d bytes, %v", len(m.Payload), err)
	}
	if err := p.Inflate(&m); err != ErrInflatedTooBig {
		t.Fatalf("Inflate of a bomb: %v, want ErrInflatedTooBig", err)
	}
	if _, _, err := p.Parse(stream); err != ErrInflatedTooBig {
		t.Fatalf("Parse after a failed Inflate: %v, want the error again", err)
	}
}

// A message that inflates past the limit fails before memory grows: the
// bytes allocated stay near the limit however large the bomb.
func TestInflate_BombBounded(t *testing.T) {
	bomb := stdDeflate(make([]byte, 64<<20))
	const limit = 64 << 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := inflate(bomb, limit)
	runtime.ReadMemStats(&after)
	if out != nil || !errors.Is(err, ErrInflatedTooBig) {
		t.Fatalf("inflate: %v", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4*limit+256<<10 {
		t.Fatalf("inflating a 64 MiB bomb allocated %d bytes", grown)
	}
}

func TestInflate_ExactLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{4095, 4096, 4097, 65535, 65536} {
		msg := bytes.Repeat(tickJSON(1024), 1+n/1000)[:n]
		out, err := inflate(stdDeflate(msg), 4096)
		switch {
		case n <= 4096 && (err != nil || !bytes.Equal(*out, msg)):
			t.Fatalf("%d bytes within a 4096 limit: %v", n, err)
		case n > 4096 && err != ErrInflatedTooBig:
			t.Fatalf("%d bytes past a 4096 limit: %v", n, err)
		}
		if out != nil {
			putBuf(out)
		}
	}
}

// An inflater is pooled across connections, so nothing of one message may
// change what the next inflates to. The second message below has an empty
// distance table: inflating it alone is corrupt input (its one match has no
// distance code), and it must stay so after a message whose distance table
// would decode it.
func TestInflate_NothingCarriedOver(t *testing.T) {
	t.Parallel()
	const limit = 1 << 12
	withDist, noDist := matchBlock(1), matchBlock(0)
	if out, err := stdInflate(withDist, limit); err != nil || string(out) != "aaaa" {
		t.Fatalf("compress/flate: %q, %v", out, err)
	}
	if _, err := stdInflate(noDist, limit); err == nil {
		t.Fatal("compress/flate inflates a match without a distance table")
	}
	for _, before := range [][]byte{withDist, stdDeflate(tickJSON(1024)), stdDeflate(randomBytes(300, 1))} {
		f := newInflater()
		if out, err := f.inflate(before, limit); err != nil {
			t.Fatalf("first message: %v", err)
		} else {
			putBuf(out)
		}
		if out, err := f.inflate(noDist, limit); err == nil {
			t.Errorf("after %x…: inflated %q from a message that is corrupt alone", before[:4], *out)
			putBuf(out)
		}
	}
}

// matchBlock is a dynamic-Huffman DEFLATE block (RFC 1951 section 3.2.7)
// whose literal table codes 'a', end of block and a length-3 match, and
// whose distance table has one code, distance 1, of distBits bits (1) or
// none (0). Its data: 'a', a match (length 3, distance code bit 0), end.
func matchBlock(distBits uint) []byte {
	var w bitWriter
	w.bits(0, 1)  // BFINAL: the message tail ends it
	w.bits(2, 2)  // BTYPE: dynamic Huffman
	w.bits(1, 5)  // HLIT: 258 literal/length codes
	w.bits(0, 5)  // HDIST: 1 distance code
	w.bits(14, 4) // HCLEN: 18 code length codes, up to symbol 1
	// Code length code lengths in their order 16 17 18 0 8 7 9 6 10 5 11 4
	// 12 3 13 2 14 1: symbols 0, 1, 2 and 18 get 2 bits each (codes 00, 01,
	// 10, 11).
	for _, l := range []uint64{0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2} {
		w.bits(l, 3)
	}
	w.code(3, 2).bits(97-11, 7)  // 97 zeros (18)
	w.code(1, 2)                 // 'a': 1 bit
	w.code(3, 2).bits(138-11, 7) // 138 zeros
	w.code(3, 2).bits(20-11, 7)  // 20 zeros, up to 255
	w.code(2, 2).code(2, 2)      // end of block and length 3: 2 bits each
	w.code(uint64(distBits), 2)  // distance code 0
	// Data: 'a' is 0, end of block 10, length 3 is 11; distance code 0.
	w.code(0, 1).code(3, 2).code(0, 1).code(2, 2)
	w.bits(0, 3) // the sync flush's stored block, whose LEN is the tail
	return w.b
}

// bitWriter packs DEFLATE's bit stream: fields from the least significant
// bit, Huffman codes from their most significant bit.
type bitWriter struct {
	b []byte
	n uint
}

func (w *bitWriter) bits(v uint64, n uint) *bitWriter {
	for i := range n {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (w.n % 8)
		w.n++
	}
	return w
}

func (w *bitWriter) code(c uint64, n uint) *bitWriter {
	for i := n; i > 0; i-- {
		w.bits(c>>(i-1)&1, 1)
	}
	return w
}
