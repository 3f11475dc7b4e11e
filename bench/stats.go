package bench

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxLatency is the largest latency the histograms record (microseconds).
const maxLatency = int64(time.Minute / time.Microsecond)

// stats are one process's counters and latency histogram (microseconds,
// 3 significant digits), sharded to keep reader workers off one lock.
type stats struct {
	received  atomic.Int64 // broadcast deliveries or echo replies while measuring
	rxBytes   atomic.Int64 // bytes subscribers read from their sockets while measuring (frames as sent: compressed or not)
	sent      atomic.Int64 // echo: messages sent while measuring; churn: handshakes
	lost      atomic.Int64 // sequence gaps
	reordered atomic.Int64
	closed    atomic.Int64 // connections the server closed
	failed    atomic.Int64 // churn: failed handshakes
	misrouted atomic.Int64 // channel mode: messages of a channel the subscriber is not on
	malformed atomic.Int64 // channel mode: message frames the generator could not read
	hists     [16]struct {
		sync.Mutex
		h *hdrhistogram.Histogram
	}
}

func newStats() *stats {
	s := &stats{}
	for i := range s.hists {
		s.hists[i].h = hdrhistogram.New(1, maxLatency, 3)
	}
	return s
}

func (s *stats) record(shard int, d time.Duration) {
	us := max(int64(d/time.Microsecond), 1)
	h := &s.hists[shard%len(s.hists)]
	h.Lock()
	_ = h.h.RecordValue(min(us, maxLatency))
	h.Unlock()
}

func (s *stats) reset() {
	s.received.Store(0)
	s.rxBytes.Store(0)
	s.sent.Store(0)
	s.lost.Store(0)
	s.reordered.Store(0)
	s.failed.Store(0)
	s.misrouted.Store(0)
	s.malformed.Store(0)
	for i := range s.hists {
		s.hists[i].Lock()
		s.hists[i].h.Reset()
		s.hists[i].Unlock()
	}
}

// snapshot is what a process reports: counters and its merged histogram.
type snapshot struct {
	Connected, DialErrors     int
	Received, Sent, Lost      int64
	Reordered, Closed, Failed int64
	Misrouted, Malformed      int64
	RxBytes                   int64
	Subs                      []int `json:",omitempty"` // channel mode: connected subscribers per channel
	Hist                      *hdrhistogram.Snapshot
	Storm                     *snapshot `json:",omitempty"` // broadcast with Churners: their handshakes (Sent, Failed, Hist)
}

func (s *stats) snapshot(connected, dialErrors int, subs []int) snapshot {
	h := hdrhistogram.New(1, maxLatency, 3)
	for i := range s.hists {
		s.hists[i].Lock()
		h.Merge(s.hists[i].h)
		s.hists[i].Unlock()
	}
	return snapshot{
		Connected: connected, DialErrors: dialErrors,
		Received: s.received.Load(), Sent: s.sent.Load(), Lost: s.lost.Load(),
		Reordered: s.reordered.Load(), Closed: s.closed.Load(), Failed: s.failed.Load(),
		Misrouted: s.misrouted.Load(), Malformed: s.malformed.Load(), RxBytes: s.rxBytes.Load(), Subs: subs,
		Hist: h.Export(),
	}
}

// merge adds o into a.
func (a *snapshot) merge(o snapshot) {
	a.Connected += o.Connected
	a.DialErrors += o.DialErrors
	a.Received += o.Received
	a.Sent += o.Sent
	a.Lost += o.Lost
	a.Reordered += o.Reordered
	a.Closed += o.Closed
	a.Failed += o.Failed
	a.Misrouted += o.Misrouted
	a.Malformed += o.Malformed
	a.RxBytes += o.RxBytes
	for len(a.Subs) < len(o.Subs) {
		a.Subs = append(a.Subs, 0)
	}
	for i, n := range o.Subs {
		a.Subs[i] += n
	}
	if o.Storm != nil {
		if a.Storm == nil {
			a.Storm = &snapshot{}
		}
		a.Storm.merge(*o.Storm)
	}
	h := hdrhistogram.New(1, maxLatency, 3)
	if a.Hist != nil {
		h.Merge(hdrhistogram.Import(a.Hist))
	}
	if o.Hist != nil {
		h.Merge(hdrhistogram.Import(o.Hist))
	}
	a.Hist = h.Export()
}
