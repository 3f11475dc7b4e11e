package frame

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestPrepared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		op      OpCode
		payload []byte
	}{
		{"empty text", OpText, nil},
		{"text", OpText, []byte("shared")},
		{"binary 126", OpBinary, rep(7, 126)},
		{"binary 65536", OpBinary, rep(7, 65536)},
		{"ping", OpPing, []byte("p")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := bytes.Clone(tc.payload)
			p := NewPrepared(tc.op, src)
			if len(src) > 0 {
				src[0]++ // the Prepared owns a copy
			}
			if p.OpCode() != tc.op || p.Len() != len(p.Bytes()) {
				t.Fatalf("op %v len %d of %d bytes", p.OpCode(), p.Len(), len(p.Bytes()))
			}
			if want := AppendFrame(nil, tc.op, tc.payload); !bytes.Equal(p.Bytes(), want) {
				t.Fatal("bytes differ from AppendFrame")
			}
			f, err := readFrame(p.Bytes())
			if err != nil || !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpCode(tc.op) || !bytes.Equal(f.Payload, tc.payload) {
				t.Fatalf("gobwas read %+v: %v", f.Header, err)
			}
		})
	}
}

func TestNewClosePrepared(t *testing.T) {
	t.Parallel()
	c := NewClosePrepared(CloseGoingAway, "bye")
	f, err := readFrame(c.Bytes())
	if err != nil || f.Header.OpCode != ws.OpClose || !f.Header.Fin {
		t.Fatalf("%+v %v", f.Header, err)
	}
	code, reason, err := ParseClosePayload(f.Payload)
	if err != nil || code != CloseGoingAway || string(reason) != "bye" || c.OpCode() != OpClose {
		t.Fatalf("close: %v %q %v", code, reason, err)
	}
	if f := NewClosePrepared(CloseNoStatus, ""); !bytes.Equal(f.Bytes(), []byte{0x88, 0x00}) {
		t.Fatalf("no status: % x", f.Bytes())
	}
	long := NewClosePrepared(CloseGoingAway, string(rep('x', 500)))
	if long.Len() != 2+MaxControlPayload {
		t.Fatalf("long reason: %d bytes", long.Len())
	}
}

// Many readers may share one Prepared; the race detector checks it.
func TestPrepared_ConcurrentReaders(t *testing.T) {
	t.Parallel()
	p := NewPrepared(OpText, []byte("broadcast"))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			got, _, err := wsutil.ReadServerData(rw(p.Bytes()))
			if err == nil && string(got) != "broadcast" {
				err = fmt.Errorf("read %q", got)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readFrame reads one frame with gobwas: its header, then its payload.
func readFrame(b []byte) (ws.Frame, error) {
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return f, err
	}
	if h.Masked {
		ws.Cipher(f.Payload, h.Mask, 0)
	}
	return f, nil
}

func BenchmarkNewPrepared(b *testing.B) {
	for _, size := range []int{32, 1024} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			payload := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				NewPrepared(OpBinary, payload)
			}
		})
	}
}
