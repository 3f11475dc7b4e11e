// Package pace admits work at a rate and tells what it refuses when to
// come back, so that a storm of refused clients returns spread out at the
// rate instead of all together.
package pace

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxRetryAfter bounds the seconds a refusal is told to wait: a client that
// waits longer has its own backoff cap anyway.
const MaxRetryAfter = 60

// Limiter is a token bucket (a burst of a tenth of a second's worth, at
// least 1) and a virtual queue of the refused that moves at its rate. Each
// refusal books the next place of the queue, and RetryAfter says when that
// place comes: N clients refused at once are told to return over N/rate
// seconds. Told "1 s" each, they would all return together, most be
// refused again and double their backoff: their backoff, not the rate,
// would set the pace.
type Limiter struct {
	bucket *rate.Limiter
	every  time.Duration // one place per 1/rate

	mu   sync.Mutex
	tail time.Time // when the last booked place comes
}

// New returns a Limiter of perSecond (> 0).
func New(perSecond float64) *Limiter {
	return &Limiter{
		bucket: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))),
		every:  time.Duration(float64(time.Second) / perSecond),
	}
}

// Allow takes a token if there is one.
func (l *Limiter) Allow() bool { return l.bucket.Allow() }

// Wait takes a token, waiting for one as long as ctx allows.
func (l *Limiter) Wait(ctx context.Context) error { return l.bucket.Wait(ctx) }

// RetryAfter is the Retry-After, in whole seconds (1 to MaxRetryAfter), for
// a refusal at now. While the bucket is empty it books the next place at
// least a second after now: a client that waits that long plus a jitter of
// up to a second returns within the second of its place. With a token left
// the refusal was not this limiter's, and the answer is 1.
func (l *Limiter) RetryAfter(now time.Time) int {
	if l.bucket.TokensAt(now) >= 1 {
		return 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if next := now.Add(time.Second); l.tail.Before(next) { // the soonest a Retry-After can name
		l.tail = next
	}
	if l.tail.Sub(now) < MaxRetryAfter*time.Second {
		l.tail = l.tail.Add(l.every)
	}
	return min(MaxRetryAfter, int(l.tail.Sub(now)/time.Second))
}
