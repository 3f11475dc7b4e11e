package server

import (
	"reflect"
	"strings"
	"testing"
)

// Every uint64 of Stats comes from exactly one row of counterTable, with a
// metric name of its own: a counter cannot be added half-way.
func TestStats_CounterTableCoversStats(t *testing.T) {
	var st Stats
	rows := map[*uint64]string{}
	metrics := map[string]bool{}
	for _, row := range counterTable {
		p := row.stat(&st)
		if prev, ok := rows[p]; ok {
			t.Errorf("%s and %s fill the same Stats field", prev, row.metric)
		}
		rows[p] = row.metric
		if metrics[row.metric] || !strings.HasPrefix(row.metric, "fanout_") || row.help == "" {
			t.Errorf("metric %q repeated, unprefixed or without help", row.metric)
		}
		metrics[row.metric] = true
	}
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		switch name {
		case "FramesOffered", // the frames-per-write histogram's sum, exported with it
			"CompressCalls", "CompressBytesIn", "CompressBytesOut": // frame.Deflater's counts, exported beside the table
			continue
		}
		if f := v.Field(i); f.Kind() == reflect.Uint64 {
			if _, ok := rows[f.Addr().Interface().(*uint64)]; !ok {
				t.Errorf("Stats.%s has no row in counterTable", name)
			}
		}
	}
}
