package nats

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/nats-io/nats.go"
)

// Interest routing (pubsub.Router): a node holds one core subscription
// per channel it serves, on the subject the stream republishes to. Route
// only notes the route; a goroutine subscribes what was noted, confirms
// all of it with one PING (Flush), then calls each live.

// route is one route waiting for its live call.
type route struct{ live func() }

// Route asks for channel's messages.
func (b *Broker) Route(channel string, live func()) {
	b.routeMu.Lock()
	b.pending[channel] = &route{live}
	b.routeMu.Unlock()
	wake(b.kick)
}

// Unroute gives up channel's messages.
func (b *Broker) Unroute(channel string) {
	b.routeMu.Lock()
	defer b.routeMu.Unlock()
	delete(b.pending, channel)
	if sub := b.subs[channel]; sub != nil {
		_ = sub.Unsubscribe()
		delete(b.subs, channel)
	}
}

// flushRoutes subscribes the routes noted and calls their live once the
// server has confirmed them, until ctx is done.
func (b *Broker) flushRoutes(ctx context.Context, deliver func(pubsub.Message)) {
	prefix := b.tok + ".msg."
	handler := func(m *nats.Msg) {
		k, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(m.Subject, prefix))
		if msg, ok := parse(string(k), m.Header, m.Data); ok {
			deliver(msg)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.routeMu.Lock()
		due := make(map[string]*route, len(b.pending))
		for c, r := range b.pending {
			if b.subs[c] == nil {
				sub, err := b.nc.Subscribe(b.subject("msg", c), handler)
				if err != nil {
					continue
				}
				b.subs[c] = sub
			}
			due[c] = r
		}
		b.routeMu.Unlock()
		if len(due) == 0 {
			continue
		}
		if !b.ready.Load() || b.nc.FlushTimeout(2*time.Second) != nil {
			select { // the server has not confirmed them: again shortly
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			wake(b.kick)
			continue
		}
		b.routeMu.Lock()
		for c, r := range due {
			if b.pending[c] != r { // unrouted meanwhile, maybe routed again
				delete(due, c)
				continue
			}
			delete(b.pending, c)
		}
		b.routeMu.Unlock()
		for _, r := range due {
			r.live()
		}
	}
}
