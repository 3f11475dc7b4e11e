package bench

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The server's write-path metrics read from Config.MetricsURL (Fanout's
// admin /metrics). The per-write ones are histograms; the others are
// counters. The TLS ones count wss's corked writes (issue 19): records
// sealed, and the sends that carried them (a part of all write syscalls);
// a server without them reports no records.
const (
	writeCallsMetric      = "fanout_write_syscalls_total"
	framesOutMetric       = "fanout_frames_out_total"
	framesPerWriteMetric  = "fanout_frames_per_write"
	recordsOutMetric      = "fanout_tls_records_out_total"
	tlsWriteCallsMetric   = "fanout_tls_write_syscalls_total"
	recordsPerWriteMetric = "fanout_tls_records_per_write"
)

// series is one scrape: every sample by its series (name and labels as
// the server wrote them).
type series map[string]float64

// scrape reads a Prometheus text exposition from url.
func scrape(url string) (series, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: metrics: %s answered %s", url, resp.Status)
	}
	s := series{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			s[line[:i]] = v
		}
	}
	return s, sc.Err()
}

// WritePath is what the server's metrics say about its writes over the
// measured window.
type WritePath struct {
	WriteSyscalls     int64   `json:"write_syscalls"`      // the server's write syscalls
	FramesOut         int64   `json:"frames_out"`          // frames fully written
	FramesPerWrite    float64 `json:"frames_per_write"`    // FramesOut / WriteSyscalls
	WritesPerDelivery float64 `json:"writes_per_delivery"` // WriteSyscalls / deliveries the generator counted
	// From the server's frames-per-write histogram when it has one: the
	// upper bound of the bucket holding each percentile of the writes.
	FramesPerWriteP50 float64 `json:"frames_per_write_p50,omitempty"`
	FramesPerWriteP99 float64 `json:"frames_per_write_p99,omitempty"`
	// Over wss, when the server counts TLS records: records sealed, per
	// TLS send (per write syscall if the server does not count those), and
	// its records-per-write histogram's percentiles if it has one.
	RecordsOut         int64   `json:"tls_records_out,omitempty"`
	RecordsPerWrite    float64 `json:"tls_records_per_write,omitempty"`
	RecordsPerWriteP50 float64 `json:"tls_records_per_write_p50,omitempty"`
	RecordsPerWriteP99 float64 `json:"tls_records_per_write_p99,omitempty"`
}

// writePath is the difference between two scrapes.
func writePath(before, after series, deliveries int64) *WritePath {
	w := &WritePath{
		WriteSyscalls: int64(after[writeCallsMetric] - before[writeCallsMetric]),
		FramesOut:     int64(after[framesOutMetric] - before[framesOutMetric]),
	}
	if w.WriteSyscalls > 0 {
		w.FramesPerWrite = float64(w.FramesOut) / float64(w.WriteSyscalls)
	}
	if deliveries > 0 {
		w.WritesPerDelivery = float64(w.WriteSyscalls) / float64(deliveries)
	}
	w.FramesPerWriteP50 = bucketQuantile(before, after, framesPerWriteMetric, 0.50)
	w.FramesPerWriteP99 = bucketQuantile(before, after, framesPerWriteMetric, 0.99)
	w.RecordsOut = int64(after[recordsOutMetric] - before[recordsOutMetric])
	sends := int64(after[tlsWriteCallsMetric] - before[tlsWriteCallsMetric])
	if sends == 0 {
		sends = w.WriteSyscalls
	}
	if sends > 0 {
		w.RecordsPerWrite = float64(w.RecordsOut) / float64(sends)
	}
	w.RecordsPerWriteP50 = bucketQuantile(before, after, recordsPerWriteMetric, 0.50)
	w.RecordsPerWriteP99 = bucketQuantile(before, after, recordsPerWriteMetric, 0.99)
	return w
}

// String is the write path in one phrase, the percentiles and records when
// the server reports them.
func (w WritePath) String() string {
	s := fmt.Sprintf("%d writev, %d frames, %.2f frames/write", w.WriteSyscalls, w.FramesOut, w.FramesPerWrite)
	if w.FramesPerWriteP50 > 0 {
		s += fmt.Sprintf(" (p50 %g, p99 %g)", w.FramesPerWriteP50, w.FramesPerWriteP99)
	}
	if w.RecordsOut > 0 {
		s += fmt.Sprintf(", %d TLS records, %.2f records/write", w.RecordsOut, w.RecordsPerWrite)
		if w.RecordsPerWriteP50 > 0 {
			s += fmt.Sprintf(" (p50 %g, p99 %g)", w.RecordsPerWriteP50, w.RecordsPerWriteP99)
		}
	}
	return s + fmt.Sprintf(", %.3f writes/delivery", w.WritesPerDelivery)
}

// bucketQuantile is the upper bound of the histogram bucket holding
// quantile q of the observations between two scrapes (0 when the server
// has no such histogram or nothing was observed).
func bucketQuantile(before, after series, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range after {
		le, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		bound, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{bound, v - before[k]})
	}
	var total float64
	for _, b := range bs {
		total = math.Max(total, b.n) // cumulative: the +Inf bucket holds all
	}
	best := math.Inf(1)
	for _, b := range bs {
		if total > 0 && b.n >= q*total && b.le < best {
			best = b.le
		}
	}
	if math.IsInf(best, 1) {
		return 0
	}
	return best
}
