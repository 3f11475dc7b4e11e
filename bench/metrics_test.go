package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// exposition is a Prometheus text page with the write path's counters and
// histograms; withRecords false leaves the TLS ones out, as a server that
// does not count them. Half the writes are TLS sends.
func exposition(writes, frames, records int, withRecords bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE fanout_write_syscalls_total counter\nfanout_write_syscalls_total %d\n", writes)
	fmt.Fprintf(&b, "fanout_frames_out_total %d\n", frames)
	fmt.Fprintf(&b, "fanout_frames_per_write_bucket{le=\"1\"} %d\nfanout_frames_per_write_bucket{le=\"4\"} %d\nfanout_frames_per_write_bucket{le=\"+Inf\"} %d\n", writes/2, writes, writes)
	if withRecords {
		fmt.Fprintf(&b, "fanout_tls_records_out_total %d\nfanout_tls_write_syscalls_total %d\n", records, writes/2)
		fmt.Fprintf(&b, "fanout_tls_records_per_write_bucket{le=\"1\"} %d\nfanout_tls_records_per_write_bucket{le=\"2\"} %d\nfanout_tls_records_per_write_bucket{le=\"+Inf\"} %d\n", writes, writes, writes)
	}
	return b.String()
}

// Frames and TLS records per write come from two scrapes of the server's
// metrics; a server without the records metrics reports none, not zeros
// that read as a measurement.
func TestWritePath_FramesAndRecords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records bool
		want    WritePath
	}{
		{"tls records", true, WritePath{WriteSyscalls: 100, FramesOut: 250, FramesPerWrite: 2.5, WritesPerDelivery: 0.5,
			FramesPerWriteP50: 1, FramesPerWriteP99: 4, RecordsOut: 100, RecordsPerWrite: 2, RecordsPerWriteP50: 1, RecordsPerWriteP99: 1}},
		{"no records metric", false, WritePath{WriteSyscalls: 100, FramesOut: 250, FramesPerWrite: 2.5, WritesPerDelivery: 0.5,
			FramesPerWriteP50: 1, FramesPerWriteP99: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var page atomic.Pointer[string]
			page.Store(new(exposition(0, 0, 0, tc.records)))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, *page.Load()) }))
			defer srv.Close()
			before, err := scrape(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			page.Store(new(exposition(100, 250, 100, tc.records)))
			after, err := scrape(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if got := *writePath(before, after, 200); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if s := writePath(before, after, 200).String(); strings.Contains(s, "records") != tc.records {
				t.Fatalf("%q", s)
			}
		})
	}
}
