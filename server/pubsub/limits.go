package pubsub

import (
	"fmt"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// creators limits how fast each connection makes new channels
// (Config.ChannelCreateRate): a token bucket per connection, forgotten
// once it has refilled, so the map holds only the recent creators.
type creators struct {
	mu        sync.Mutex
	m         map[*server.Conn]*bucket
	perSecond float64 // 0: no limit
	burst     float64
}

type bucket struct {
	tokens float64
	at     time.Time // of the last refill
}

func newCreators(perSecond float64, burst int) creators {
	if perSecond < 0 {
		return creators{}
	}
	return creators{m: make(map[*server.Conn]*bucket), perSecond: perSecond, burst: float64(max(1, burst))}
}

// refill brings k's tokens up to now. cr.mu is held.
func (cr *creators) refill(k *bucket, now time.Time) {
	k.tokens = min(cr.burst, k.tokens+now.Sub(k.at).Seconds()*cr.perSecond)
	k.at = now
}

// reserve spends one of c's tokens for a new channel; giveBack returns it
// when no channel was made after all. A nil c (the server's own calls) is
// not limited.
func (cr *creators) reserve(c *server.Conn) (giveBack func(), err error) {
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
		return nil, fmt.Errorf("%w: this connection makes new channels faster than %g a second", ErrTooManyChannels, cr.perSecond)
	}
	k.tokens--
	return func() {
		cr.mu.Lock()
		defer cr.mu.Unlock()
		k.tokens = min(cr.burst, k.tokens+1)
	}, nil
}

// sweep forgets the buckets that have refilled.
func (cr *creators) sweep(now time.Time) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for c, k := range cr.m {
		if cr.refill(k, now); k.tokens >= cr.burst {
			delete(cr.m, c)
		}
	}
}
