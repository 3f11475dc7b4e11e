package pace

import (
	"testing"
	"time"
)

// A storm refused at one instant is told to return spread over the
// seconds its size needs at the rate: as many per second as the rate, no
// one sooner than a second, no one later than MaxRetryAfter.
func TestLimiter_BooksRefusalsAtTheRate(t *testing.T) {
	const perSecond = 100
	l := New(perSecond)
	for l.Allow() { // empty the burst
	}
	now := time.Now()
	perSecondTold := map[int]int{}
	for range 5 * perSecond {
		perSecondTold[l.RetryAfter(now)]++
	}
	for s := 1; s <= 5; s++ {
		if n := perSecondTold[s]; n < perSecond-1 || n > perSecond+1 {
			t.Errorf("told to come back in %d s: %d clients, want %d (all told: %v)", s, n, perSecond, perSecondTold)
		}
	}
	if n := perSecondTold[6]; n > 1 {
		t.Errorf("%d told 6 s, want the last of 500 at ~6 s", n)
	}
	for range 100 * perSecond {
		if s := l.RetryAfter(now); s > MaxRetryAfter {
			t.Fatalf("told %d s, more than MaxRetryAfter", s)
		}
	}
}

// A refusal while the bucket holds a token is another limit's: 1 s, and
// no place is taken from the queue.
func TestLimiter_NotEmptyIsNotBooked(t *testing.T) {
	l := New(10)
	now := time.Now()
	if s := l.RetryAfter(now); s != 1 {
		t.Fatalf("with tokens left: %d s, want 1", s)
	}
	if !l.tail.IsZero() {
		t.Fatalf("with tokens left a place was booked (tail %v)", l.tail)
	}
}
