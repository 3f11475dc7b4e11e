package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Interest routing (pubsub.Router): the node's connection to Redis holds
// one SUBSCRIBE per channel with subscribers on the node, so Redis sends a
// node only what its clients want. Route and Unroute only note the change;
// a goroutine of the connection sends what changed as one SUBSCRIBE and
// one UNSUBSCRIBE, at most every routeInterval, so a burst of joins costs
// a few commands, never one per join. Once Redis confirms a subscription,
// another goroutine calls the route's live.

// routeInterval is the least time between two flushes of route changes:
// at most 1/routeInterval SUBSCRIBE commands a second, whatever the joins.
const routeInterval = 50 * time.Millisecond

// routes is what the node wants (Route, Unroute) and what the live
// connection owes it.
type routes struct {
	mu    sync.Mutex
	want  map[string]*route   // channels the node routes here
	dirty map[string]struct{} // channels whose want changed since the last flush
	owed  []string            // channels confirmed by Redis, their live not called yet
	kick  chan struct{}       // dirty has something: wake the flusher
	owing chan struct{}       // owed has something: wake the confirmer

	held atomic.Int64 // channels subscribed on the live connection
}

// route is one routed channel.
type route struct {
	live func()
	owed bool // live not called yet
}

func newRoutes() routes {
	return routes{want: make(map[string]*route), dirty: make(map[string]struct{}), kick: make(chan struct{}, 1), owing: make(chan struct{}, 1)}
}

// Route asks Redis for channel's messages (pubsub.Router).
func (b *Broker) Route(channel string, live func()) {
	r := &b.space(channel).routes
	r.mu.Lock()
	r.want[channel] = &route{live: live, owed: true}
	r.dirty[channel] = struct{}{}
	r.mu.Unlock()
	wake(r.kick)
}

// Unroute gives up channel's messages (pubsub.Router).
func (b *Broker) Unroute(channel string) {
	r := &b.space(channel).routes
	r.mu.Lock()
	delete(r.want, channel)
	r.dirty[channel] = struct{}{}
	r.mu.Unlock()
	wake(r.kick)
}

func (s *space) topics(channels []string) []string {
	for i, c := range channels {
		channels[i] = s.topicPrefix() + c
	}
	return channels
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flushRoutes keeps ps subscribed to what the node wants of s until ctx
// is done: first everything, then a PING whose reply tells receive that
// the connection holds it all; then the changes, at most every
// routeInterval. In a cluster the subscriptions are sharded (SSUBSCRIBE,
// to the master of s's slot). On a failed
// write it closes ps, which ends the connection.
func (b *Broker) flushRoutes(ctx context.Context, s *space, ps *goredis.PubSub) {
	r := &s.routes
	held := make(map[string]struct{})
	r.mu.Lock()
	for c := range r.want {
		r.dirty[c] = struct{}{}
	}
	r.mu.Unlock()
	subscribe, unsubscribe := ps.Subscribe, ps.Unsubscribe
	if b.cluster != nil {
		subscribe, unsubscribe = ps.SSubscribe, ps.SUnsubscribe
	}
	for first := true; ; first = false {
		sub, unsub := r.changes(held)
		var err error
		if len(sub) > 0 {
			err = subscribe(ctx, s.topics(sub)...)
		}
		if err == nil && len(unsub) > 0 {
			err = unsubscribe(ctx, s.topics(unsub)...)
		}
		if err == nil && first && b.cluster != nil {
			// A restarted cluster takes subscriptions before it serves keys
			// (CLUSTERDOWN): ready means the catch-up can read history.
			err = b.rdb.Exists(ctx, s.probe()).Err()
		}
		if err == nil && first {
			err = ps.Ping(ctx) // its reply follows every confirmation: receive is ready then
		}
		if err != nil {
			_ = ps.Close()
			return
		}
		r.held.Store(int64(len(held)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(routeInterval):
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
	}
}

// changes returns the topics to subscribe and unsubscribe for the dirty
// channels, and updates held to match. A channel routed again while held
// is owed its live at once: its messages never stopped.
func (r *routes) changes(held map[string]struct{}) (sub, unsub []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.dirty {
		_, isHeld := held[c]
		w := r.want[c]
		switch {
		case w != nil && !isHeld:
			held[c] = struct{}{}
			sub = append(sub, c)
		case w == nil && isHeld:
			delete(held, c)
			unsub = append(unsub, c)
		case w != nil && w.owed:
			r.owe(c)
		}
	}
	clear(r.dirty)
	return sub, unsub
}

// owe queues channel for its live call. r.mu is held.
func (r *routes) owe(channel string) {
	r.owed = append(r.owed, channel)
	wake(r.owing)
}

// subscribed notes Redis's confirmation of channel's subscription.
func (r *routes) subscribed(channel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.want[channel]; w != nil && w.owed {
		r.owe(channel)
	}
}

// confirmRoutes calls the live of each confirmed route of r, in order,
// until ctx is done: on a goroutine of its own, as live may read History.
func confirmRoutes(ctx context.Context, r *routes) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.owing:
		}
		r.mu.Lock()
		var due []*route
		for _, c := range r.owed {
			if w := r.want[c]; w != nil && w.owed {
				w.owed = false
				due = append(due, w)
			}
		}
		r.owed = nil
		r.mu.Unlock()
		for i, w := range due {
			if ctx.Err() != nil { // the connection ended: the next one confirms the rest
				r.mu.Lock()
				for _, w := range due[i:] {
					w.owed = true
				}
				r.mu.Unlock()
				return
			}
			w.live()
		}
	}
}
