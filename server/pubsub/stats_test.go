package pubsub

import (
	"reflect"
	"strings"
	"testing"
)

// Every number of Stats (the broker's too) is exported by exactly one row
// of metricTable, under a name of its own: a metric cannot be added
// half-way.
func TestStats_MetricTableCoversStats(t *testing.T) {
	var st Stats
	fields := numericFields(reflect.ValueOf(&st).Elem(), "")
	names := map[string]bool{}
	seen := map[string]string{}
	for _, row := range metricTable {
		if names[row.name] || !strings.HasPrefix(row.name, "fanout_") || row.help == "" {
			t.Errorf("metric %q repeated, unprefixed or without help", row.name)
		}
		names[row.name] = true
		// Set one field at a time: the row that reads it is the one whose
		// value moves.
		for path, f := range fields {
			f.Set(reflect.ValueOf(uint64(7)).Convert(f.Type()))
			if row.value(&st) == 7 {
				if prev, ok := seen[path]; ok {
					t.Errorf("Stats.%s is exported by %s and %s", path, prev, row.name)
				}
				seen[path] = row.name
			}
			f.SetZero()
		}
	}
	for path := range fields {
		if _, ok := seen[path]; !ok {
			t.Errorf("Stats.%s has no row in metricTable", path)
		}
	}
}

// numericFields maps the path of every int and uint64 field of v, through
// embedded structs, to the field.
func numericFields(v reflect.Value, prefix string) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for i := range v.NumField() {
		f, name := v.Field(i), prefix+v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Struct:
			for p, g := range numericFields(f, name+".") {
				out[p] = g
			}
		case reflect.Int, reflect.Uint64:
			out[name] = f
		}
	}
	return out
}
