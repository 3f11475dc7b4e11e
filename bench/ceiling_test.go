package bench

import (
	"testing"
	"time"
)

func TestKeptUp(t *testing.T) {
	good := Result{TargetPS: 100, PublishedPS: 100, P99ms: 500}
	for _, tc := range []struct {
		name string
		edit func(*Result)
		want bool
	}{
		{"clean", func(*Result) {}, true},
		{"missing", func(r *Result) { r.Missing = 1 }, false},
		{"reordered", func(r *Result) { r.Reordered = 1 }, false},
		{"disconnected", func(r *Result) { r.Disconnected = 1 }, false},
		{"publishers held back", func(r *Result) { r.PublishedPS = 90 }, false},
		{"p99 over the bound", func(r *Result) { r.P99ms = 1001 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			if got, why := keptUp(r, time.Second); got != tc.want || (!got && why == "") {
				t.Fatalf("keptUp = %v %q, want %v", got, why, tc.want)
			}
		})
	}
}

// The frames-per-write quantiles come from the histogram's bucket deltas.
func TestBucketQuantile(t *testing.T) {
	before := series{`h_bucket{le="1"}`: 10, `h_bucket{le="4"}`: 10, `h_bucket{le="16"}`: 10, `h_bucket{le="+Inf"}`: 10}
	after := series{`h_bucket{le="1"}`: 20, `h_bucket{le="4"}`: 60, `h_bucket{le="16"}`: 109, `h_bucket{le="+Inf"}`: 110}
	// 100 writes: 10 of one frame, 40 of up to 4, 49 of up to 16, 1 above.
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.05, 1}, {0.5, 4}, {0.99, 16}, {1, 0}} {
		if got := bucketQuantile(before, after, "h", tc.q); got != tc.want {
			t.Errorf("q %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := bucketQuantile(before, after, "absent", 0.5); got != 0 {
		t.Errorf("absent histogram: %v", got)
	}
}
