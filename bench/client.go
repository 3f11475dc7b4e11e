package bench

import (
	"context"
	"encoding/binary"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/ws"
)

// headerBytes is the message prefix: send time (unix ns) and sequence.
const headerBytes = 16

// dialer spreads connections over loopback source addresses so one
// (src, dst, port) tuple never runs out of ephemeral ports.
type dialer struct {
	sources int
	next    atomic.Uint64
}

func (d *dialer) dial(ctx context.Context, target string) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if d.sources > 0 {
		i := d.next.Add(1) % uint64(d.sources)
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	wd := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nd.DialContext(ctx, network, addr)
	}}
	nc, br, _, err := wd.Dial(ctx, u.String())
	if err != nil {
		return nil, err
	}
	if br != nil {
		ws.PutReader(br) // the server sends nothing before we do
	}
	return nc, nil
}

// stats are shared by all subscribers of a run.
type stats struct {
	received  atomic.Int64
	lost      atomic.Int64
	reordered atomic.Int64
	errors    atomic.Int64
	closed    atomic.Int64
	hists     [64]struct {
		sync.Mutex
		h *hdrhistogram.Histogram
	}
}

func newStats() *stats {
	s := &stats{}
	for i := range s.hists {
		s.hists[i].h = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	}
	return s
}

func (s *stats) merged() *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for i := range s.hists {
		s.hists[i].Lock()
		h.Merge(s.hists[i].h)
		s.hists[i].Unlock()
	}
	return h
}

func (s *stats) reset() {
	s.received.Store(0)
	s.lost.Store(0)
	s.reordered.Store(0)
	for i := range s.hists {
		s.hists[i].Lock()
		s.hists[i].h.Reset()
		s.hists[i].Unlock()
	}
}

// subscribe reads server frames from nc until it fails, checking sequence
// order and recording delivery latency of broadcast messages.
func subscribe(nc net.Conn, id int, st *stats, measure *atomic.Bool) {
	p := frame.Parser{Role: frame.ClientSide, MaxMessageBytes: 16 << 20}
	buf := make([]byte, 4096)
	var last uint64
	hist := &st.hists[id%len(st.hists)]
	for {
		n, err := nc.Read(buf)
		if err != nil {
			st.closed.Add(1)
			return
		}
		data := buf[:n]
		for len(data) > 0 {
			m, k, err := p.Parse(data)
			data = data[k:]
			if err != nil {
				st.errors.Add(1)
				nc.Close()
				return
			}
			switch m.Op {
			case frame.OpBinary, frame.OpText:
				if len(m.Payload) < headerBytes {
					continue
				}
				sent := int64(binary.LittleEndian.Uint64(m.Payload))
				seq := binary.LittleEndian.Uint64(m.Payload[8:])
				switch {
				case last != 0 && seq <= last:
					st.reordered.Add(1)
				case last != 0 && seq > last+1:
					if measure.Load() {
						st.lost.Add(int64(seq - last - 1))
					}
				}
				last = max(last, seq)
				if measure.Load() {
					st.received.Add(1)
					us := (time.Now().UnixNano() - sent) / 1e3
					hist.Lock()
					_ = hist.h.RecordValue(max(us, 1))
					hist.Unlock()
				}
			case frame.OpPing:
				_, _ = nc.Write(frame.AppendClientFrame(nil, frame.OpPong, m.Payload, [4]byte{1, 2, 3, 4}))
			case frame.OpClose:
				st.closed.Add(1)
				nc.Close()
				return
			}
		}
	}
}

// message builds a broadcast payload carrying now and seq.
func message(size int, seq uint64) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(b[8:], seq)
	return b
}
