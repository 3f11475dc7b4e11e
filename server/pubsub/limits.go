package pubsub

import (
	"fmt"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// connRate limits how often each connection does something costly (makes
// a new channel, has history replayed): a token bucket per connection,
// forgotten once it has refilled, so the map holds only recent users.
type connRate struct {
	mu        sync.Mutex
	m         map[*server.Conn]*bucket
	perSecond float64 // 0: no limit
	burst     float64
	refusal   string // what a refusal says, after ErrTooManyChannels or ErrTooManyReplays
	err       error
}

type bucket struct {
	tokens float64
	at     time.Time // of the last refill
}

func newConnRate(perSecond float64, burst int, err error, refusal string) connRate {
	if perSecond < 0 {
		return connRate{}
	}
	return connRate{m: make(map[*server.Conn]*bucket), perSecond: perSecond, burst: float64(max(1, burst)), err: err, refusal: refusal}
}

// refill brings k's tokens up to now. cr.mu is held.
func (cr *connRate) refill(k *bucket, now time.Time) {
	k.tokens = min(cr.burst, k.tokens+now.Sub(k.at).Seconds()*cr.perSecond)
	k.at = now
}

// reserve spends one of c's tokens; giveBack returns it when the costly
// thing did not happen after all. A nil c (the server's own calls) is
// not limited.
func (cr *connRate) reserve(c *server.Conn) (giveBack func(), err error) {
	if cr.perSecond == 0 || c == nil {
		return func() {}, nil
	}
	now := time.Now()
	cr.mu.Lock()
	defer cr.mu.Unlock()
	k := cr.m[c]
	if k == nil {
		k = &bucket{tokens: cr.burst, at: now}
		cr.m[c] = k
	}
	cr.refill(k, now)
	if k.tokens < 1 {
		return nil, fmt.Errorf("%w: "+cr.refusal, cr.err, cr.perSecond)
	}
	k.tokens--
	return func() {
		cr.mu.Lock()
		defer cr.mu.Unlock()
		k.tokens = min(cr.burst, k.tokens+1)
	}, nil
}

// sweep forgets the buckets that have refilled.
func (cr *connRate) sweep(now time.Time) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for c, k := range cr.m {
		if cr.refill(k, now); k.tokens >= cr.burst {
			delete(cr.m, c)
		}
	}
}
