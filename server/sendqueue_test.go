package server

import (
	"slices"
	"testing"
)

// The send queue keeps frames in order across partial writes, tails put
// back in front and a written prefix reused, charges exactly what waits,
// and is given back once empty.
func TestSendQueue_OrderAndCharge(t *testing.T) {
	var o sendQueue
	waiting := func() []string {
		var s []string
		if o.q != nil {
			for _, b := range o.q.waiting() {
				s = append(s, string(b))
			}
		}
		return s
	}
	charged := func(frames ...string) int {
		n := 0
		for _, f := range frames {
			n += frameCost(len(f))
		}
		return n
	}
	o.push([][]byte{[]byte("aa"), []byte("bbb"), []byte("c")})
	if got := o.consume(3); got != 1 { // "aa" and one byte of "bbb"
		t.Fatalf("consume(3) completed %d frames, want 1", got)
	}
	if got, want := waiting(), []string{"bb", "c"}; !slices.Equal(got, want) {
		t.Fatalf("waiting %q, want %q", got, want)
	}
	if got := o.pushFront([]byte("x"), []byte("y")); got != charged("x", "y", "bb", "c") {
		t.Fatalf("charged %d, want %d", got, charged("x", "y", "bb", "c"))
	}
	for i := range 8 { // grows past the reused prefix
		o.push([][]byte{{byte('0' + i)}})
	}
	want := []string{"x", "y", "bb", "c", "0", "1", "2", "3", "4", "5", "6", "7"}
	if got := waiting(); !slices.Equal(got, want) {
		t.Fatalf("waiting %q, want %q", got, want)
	}
	if o.q.bytes != charged(want...) {
		t.Fatalf("charged %d, want %d", o.q.bytes, charged(want...))
	}
	if got := o.consume(13); got != 12 || o.q != nil {
		t.Fatalf("consume(all) completed %d frames, queue %v; want 12 and none", got, o.q)
	}
	o.push([][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")})
	o.consume(2)
	more := make([][]byte, 100)
	want = []string{"c", "d"}
	for i := range more {
		more[i] = []byte{byte(i)}
		want = append(want, string(more[i]))
	}
	o.push(more) // moves what waits to the front before growing
	if got := waiting(); !slices.Equal(got, want) || o.q.head != 0 {
		t.Fatalf("after a push past the capacity: waiting %d frames (head %d), want %d from 0", len(got), o.q.head, len(want))
	}
}
