package frame

import (
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"io"
	"testing"

	kflate "github.com/klauspost/compress/flate"
)

// tickJSON is a realistic fan-out message of about n bytes: a price update
// with a few levels of a book, the kind of JSON a market or score feed sends.
func tickJSON(n int) []byte {
	b := []byte(`{"type":"book","channel":"prices.BTC-USD","offset":1834221,"ts":1764600000123,"data":{"bids":[`)
	for i := 0; len(b) < n-40; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"px":"%d.%02d","qty":"%d.%03d","n":%d}`, 91234-i*3, (i*37)%100, 1+i%7, (i*7919)%1000, 1+i%5)
	}
	return append(b, `],"seq":42}}`...)
}

// BenchmarkDeflateLibs compares the two flate implementations on the hot
// path of a broadcast (one 1 KiB JSON message compressed with a pooled,
// reset writer and sync-flushed as RFC 7692 requires) and of a read
// (inflating it with a pooled, reset reader). Run with
// go test -run='^$' -bench=DeflateLibs -benchmem ./frame
func BenchmarkDeflateLibs(b *testing.B) {
	msg := tickJSON(1024)
	type lib struct {
		name   string
		writer func(level int) (io.Writer, func(io.Writer), func() error)
		reader func() (io.Reader, func(io.Reader))
	}
	libs := []lib{
		{name: "stdlib", writer: func(level int) (io.Writer, func(io.Writer), func() error) {
			w, _ := stdflate.NewWriter(nil, level)
			return w, w.Reset, w.Flush
		}, reader: func() (io.Reader, func(io.Reader)) {
			r := stdflate.NewReader(nil)
			return r, func(src io.Reader) { _ = r.(stdflate.Resetter).Reset(src, nil) }
		}},
		{name: "klauspost", writer: func(level int) (io.Writer, func(io.Writer), func() error) {
			w, _ := kflate.NewWriter(nil, level)
			return w, w.Reset, w.Flush
		}, reader: func() (io.Reader, func(io.Reader)) {
			r := kflate.NewReader(nil)
			return r, func(src io.Reader) { _ = r.(kflate.Resetter).Reset(src, nil) }
		}},
	}
	for _, l := range libs {
		for _, level := range []int{1, 5, 9} {
			b.Run(fmt.Sprintf("op=deflate/lib=%s/level=%d", l.name, level), func(b *testing.B) {
				var out bytes.Buffer
				w, reset, flush := l.writer(level)
				b.ReportAllocs()
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					out.Reset()
					reset(&out)
					_, _ = w.Write(msg)
					_ = flush()
				}
				b.ReportMetric(float64(out.Len()-4), "bytes-out")
			})
		}
	}
	b.Run("op=deflate/lib=klauspost/level=stateless", func(b *testing.B) {
		var out bytes.Buffer
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			out.Reset()
			_ = kflate.StatelessDeflate(&out, msg, false, nil)
		}
		b.ReportMetric(float64(out.Len()-4), "bytes-out")
	})
	var z bytes.Buffer
	zw, _ := stdflate.NewWriter(&z, 5)
	_, _ = zw.Write(msg)
	_ = zw.Flush()
	z.WriteString("\x01\x00\x00\xff\xff")
	for _, l := range libs {
		b.Run("op=inflate/lib="+l.name, func(b *testing.B) {
			r, reset := l.reader()
			src := bytes.NewReader(z.Bytes())
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				src.Reset(z.Bytes())
				reset(src)
				n, err := io.ReadFull(r, buf[:len(msg)])
				if err != nil || n != len(msg) {
					b.Fatal(n, err)
				}
			}
		})
	}
}
