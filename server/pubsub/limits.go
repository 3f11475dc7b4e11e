package pubsub

import (
	"fmt"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server"
	"golang.org/x/time/rate"
)

// creators limits how fast each connection makes new channels
// (Config.ChannelCreateRate): a token bucket per connection, forgotten
// once it has refilled, so the map holds only the recent creators.
type creators struct {
	mu    sync.Mutex
	m     map[*server.Conn]*rate.Limiter
	limit rate.Limit // 0: no limit
	burst int
}

func newCreators(perSecond float64, burst int) creators {
	if perSecond < 0 {
		return creators{}
	}
	return creators{m: make(map[*server.Conn]*rate.Limiter), limit: rate.Limit(perSecond), burst: max(1, burst)}
}

// reserve spends one of c's tokens for a new channel; cancel gives it back
// when no channel was made after all. A nil c (the server's own calls)
// is not limited.
func (cr *creators) reserve(c *server.Conn) (cancel func(), err error) {
	if cr.limit == 0 || c == nil {
		return func() {}, nil
	}
	now := time.Now()
	cr.mu.Lock()
	defer cr.mu.Unlock()
	l := cr.m[c]
	if l == nil {
		l = rate.NewLimiter(cr.limit, cr.burst)
		cr.m[c] = l
	}
	r := l.ReserveN(now, 1)
	if r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return nil, fmt.Errorf("%w: this connection makes new channels faster than %g a second", ErrTooManyChannels, float64(cr.limit))
	}
	return func() { r.CancelAt(time.Now()) }, nil
}

// sweep forgets the buckets that have refilled.
func (cr *creators) sweep(now time.Time) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for c, l := range cr.m {
		if l.TokensAt(now) >= float64(cr.burst) {
			delete(cr.m, c)
		}
	}
}
