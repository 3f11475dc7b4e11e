package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gorilla/websocket"
)

// maxLatencyUs is the largest latency recorded (microseconds).
const maxLatencyUs = int64(time.Minute / time.Microsecond)

// Phases of a run, for the latency histograms.
const (
	phaseBefore = iota // warmed up, before the event
	phaseStorm         // from the event until every dropped client is back
	phaseAfter         // after that
	phases
)

// latencies are publish-to-delivery histograms per phase, sharded to keep
// the clients off one lock.
type latencies [phases][16]struct {
	sync.Mutex
	h *hdrhistogram.Histogram
}

func newLatencies() *latencies {
	l := &latencies{}
	for p := range l {
		for i := range l[p] {
			l[p][i].h = hdrhistogram.New(1, maxLatencyUs, 3)
		}
	}
	return l
}

func (l *latencies) record(phase, shard int, d time.Duration) {
	s := &l[phase][shard%len(l[phase])]
	s.Lock()
	_ = s.h.RecordValue(min(max(int64(d/time.Microsecond), 1), maxLatencyUs))
	s.Unlock()
}

// merged is phase's histogram.
func (l *latencies) merged(phase int) *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, maxLatencyUs, 3)
	for i := range l[phase] {
		l[phase][i].Lock()
		h.Merge(l[phase][i].h)
		l[phase][i].Unlock()
	}
	return h
}

// run is what every client shares: where to connect, the backoff, the
// phase and the tallies.
type run struct {
	cfg       config
	phase     atomic.Int32
	lat       *latencies
	refused   atomic.Int64 // upgrades answered 503 or 429 after the event
	failed    atomic.Int64 // other failed connects after the event
	closes    sync.Map     // close code -> *atomic.Int64, after the event
	hintsUsed atomic.Int64 // reconnect delays drawn from a server's retry-ms hint
}

// client is one subscriber following README's client rules: full-jitter
// exponential backoff, the server's retry-ms hint and Retry-After, and a
// resume with since= and epoch= on every reconnect.
type client struct {
	id, node  int
	ws        atomic.Pointer[websocket.Conn] // the open connection, for shut
	epoch     string
	last      uint64 // last offset delivered
	subs      atomic.Int32
	dropped   atomic.Int64 // unix ns the event's close reached it, or 0
	back      atomic.Int64 // unix ns it was subscribed again after that, or 0
	missing   atomic.Uint64
	dups      atomic.Uint64
	gaps      atomic.Int64
	lastSeen  atomic.Uint64
	recoverTo uint64 // offsets up to this one are replayed history
}

// envelope is what the channels protocol sends.
type envelope struct {
	Type   string `json:"type"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
	Data   struct {
		T int64 `json:"t"` // publish time, unix ns
	} `json:"data"`
}

var retryMs = regexp.MustCompile(`(?:^|[\s;,])retry-ms=(\d+)`)

// loop connects, reads until the connection ends, and reconnects until
// stop is closed.
func (c *client) loop(r *run, stop <-chan struct{}) {
	attempt := 0
	for {
		var window, floor time.Duration
		ws, resp, err := c.dial(r)
		switch {
		case err != nil:
			attempt++
			window = r.backoff(attempt)
			r.countFailure(resp)
			if resp != nil {
				if s, _ := strconv.Atoi(resp.Header.Get("Retry-After")); s > 0 {
					floor = min(time.Duration(s)*time.Second, r.cfg.maxDelay)
					window = min(window, time.Second) // the server spread its answers already
				}
			}
		default:
			attempt = 0
			c.ws.Store(ws)
			if stopped(stop) { // shut may have run before the Store
				ws.Close()
				return
			}
			code, reason := c.read(r, ws)
			ws.Close()
			if stopped(stop) {
				return
			}
			if r.phase.Load() != phaseBefore {
				c.dropped.CompareAndSwap(0, time.Now().UnixNano())
			}
			c.node = r.next(c.node)
			attempt++
			window = r.backoff(attempt)
			if m := retryMs.FindStringSubmatch(reason); m != nil {
				ms, _ := strconv.Atoi(m[1])
				window = min(time.Duration(ms)*time.Millisecond, r.cfg.maxDelay)
				r.hintsUsed.Add(1)
			}
			r.countClose(code)
		}
		select {
		case <-stop:
			return
		case <-time.After(floor + rand.N(window+1)):
		}
	}
}

// backoff is the jitter window before attempt (1, 2, ...): min(cap,
// base*2^(attempt-1)).
func (r *run) backoff(attempt int) time.Duration {
	return min(r.cfg.maxDelay, r.cfg.baseDelay<<min(attempt-1, 20))
}

// next is the node a client dropped by node tries next: another one.
func (r *run) next(node int) int {
	n := len(r.cfg.nodes)
	if r.cfg.lb != "" || n == 1 {
		return node
	}
	return (node + 1 + rand.N(n-1)) % n
}

func (c *client) dial(r *run) (*websocket.Conn, *http.Response, error) {
	host := r.cfg.lb
	if host == "" {
		host = r.cfg.nodes[c.node]
	}
	q := url.Values{"channel": {r.cfg.channel}}
	if c.epoch != "" {
		q.Set("since", strconv.FormatUint(c.last, 10))
		q.Set("epoch", c.epoch)
	}
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(10+c.id%200))}}).DialContext,
	}
	return d.Dial("ws://"+host+"/ws?"+q.Encode(), nil)
}

// read takes deliveries until the connection ends: offsets at most the
// last one are duplicates (dropped), a skip is counted missing, and only
// live messages (not replayed history) count for latency.
func (c *client) read(r *run, ws *websocket.Conn) (code int, reason string) {
	for {
		_, p, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text
			}
			return 1006, ""
		}
		var e envelope
		if json.Unmarshal(p, &e) != nil {
			continue
		}
		switch e.Type {
		case "subscribed":
			c.subscribed(e)
		case "gap":
			c.gaps.Add(1)
			if e.Epoch != "" {
				c.epoch = e.Epoch
			}
		case "message":
			c.message(r, e)
		}
	}
}

func (c *client) subscribed(e envelope) {
	if c.epoch == "" {
		c.last = e.Offset // fresh: live messages follow
		c.lastSeen.Store(c.last)
	}
	c.epoch, c.recoverTo = e.Epoch, e.Offset
	c.subs.Add(1)
	if c.dropped.Load() != 0 && c.back.Load() == 0 {
		c.back.Store(time.Now().UnixNano())
	}
}

func (c *client) message(r *run, e envelope) {
	switch {
	case e.Offset <= c.last:
		c.dups.Add(1)
		return
	case e.Offset > c.last+1:
		c.missing.Add(e.Offset - c.last - 1)
	}
	c.last = e.Offset
	c.lastSeen.Store(c.last)
	onVictim := r.cfg.lb == "" && c.node == r.cfg.victim // not a survivor's delivery
	if e.Offset > c.recoverTo && e.Data.T > 0 && !onVictim {
		r.lat.record(int(r.phase.Load()), c.id, time.Since(time.Unix(0, e.Data.T)))
	}
}

func (r *run) countFailure(resp *http.Response) {
	if r.phase.Load() == phaseBefore {
		return
	}
	if resp != nil && (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) {
		r.refused.Add(1)
	} else {
		r.failed.Add(1)
	}
}

func (r *run) countClose(code int) {
	n, _ := r.closes.LoadOrStore(code, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

func (r *run) closeCounts() map[string]int64 {
	m := map[string]int64{}
	r.closes.Range(func(k, v any) bool {
		m[fmt.Sprint(k)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// shut ends c's open connection, if any: its loop then sees stop.
func (c *client) shut() {
	if ws := c.ws.Load(); ws != nil {
		ws.Close()
	}
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}
