package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A publisher sends to streams, each with its own sequence numbers that
// subscribers check for order and gaps. In the room a stream is a
// publisher; in channel mode it is a channel, and publisher p owns channels
// p, p+Publishers, p+2*Publishers, ...
type item struct {
	stream int
	seq    uint64
	failed bool // set by send: this one was refused (a batch can be refused in part)
}

// sender is one publisher's transport: a WebSocket to the room, a
// WebSocket speaking publish control messages, or HTTP API requests.
type sender interface {
	// send publishes items, stamped with the current time. Items are sent
	// together when the transport can (an API batch). An error means none
	// was accepted, and a fatalError ends the run; otherwise items marked
	// failed were refused. Close may be called more than once.
	send(items []item) error
	close()
}

// pubReport is what the publishers did.
type pubReport struct {
	sent      []int64 // per stream: messages accepted
	requests  int64   // API requests that succeeded
	errors    int64   // publishes refused or failed (counted per message)
	delivered int64   // API: the sum of the "delivered" counts the server returned
	api       *hdrhistogram.Histogram
}

// streams is how many sequence streams cfg has.
func (c Config) streams() int {
	if c.Channels > 0 {
		return c.Channels
	}
	return c.Publishers
}

// owned lists the streams publisher p sends to.
func (c Config) owned(p int) []int {
	if c.Channels == 0 {
		return []int{p}
	}
	var s []int
	for ch := p; ch < c.Channels; ch += c.Publishers {
		s = append(s, ch)
	}
	return s
}

// publish runs cfg.Publishers publishers for cfg.Duration, each paced so
// that every stream it owns gets cfg.Rate messages per second (in the
// room: one stream per publisher, spread over the target URLs
// round-robin; with Channels: every channel gets cfg.Rate, so deliveries
// per second are Rate x subscribers whatever the number of channels). It
// then waits cfg.Drain for the last deliveries.
func publish(ctx context.Context, cfg Config, lv *live) (pubReport, error) {
	rep := pubReport{api: hdrhistogram.New(1, maxLatency, 3)}
	senders := make([]sender, 0, cfg.Publishers)
	defer func() {
		for _, s := range senders {
			s.close()
		}
	}()
	for p := range cfg.Publishers {
		s, err := newSender(ctx, cfg, p)
		if err != nil {
			return rep, err
		}
		senders = append(senders, s)
	}
	pr := &pubRun{cfg: cfg, sent: make([]atomic.Int64, cfg.streams()), published: &lv.published,
		stop: make(chan struct{}), end: time.Now().Add(cfg.Duration)}
	var wg sync.WaitGroup
	fatal := make(chan error, cfg.Publishers)
	for p, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pr.loop(ctx, p, s); err != nil {
				fatal <- err
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case err := <-fatal:
		close(pr.stop)
		<-done
		return rep, err
	case <-done:
	}
	lv.setPhase("drain")
	sleep(ctx, cfg.Drain)
	pr.report(&rep, senders)
	return rep, nil
}

// pubRun is the publishers' shared state.
type pubRun struct {
	cfg       Config
	sent      []atomic.Int64 // per stream: messages accepted
	published *atomic.Int64  // all streams, for the progress line
	errs      atomic.Int64
	stop      chan struct{}
	end       time.Time
}

// loop is publisher p: it sends its streams' messages through s until the
// measurement ends, and returns only a fatal error. Publisher p starts
// p/P of its interval late, so that together the publishers' messages
// are evenly spread in time rather than sent in bursts.
func (pr *pubRun) loop(ctx context.Context, p int, s sender) error {
	cfg := pr.cfg
	owned := cfg.owned(p)
	batch := min(cfg.Batch, len(owned))
	seq := make([]uint64, len(owned))
	items := make([]item, batch)
	interval := time.Duration(float64(time.Second) * float64(batch) / (cfg.Rate * float64(len(owned))))
	next := time.Now().Add(interval * time.Duration(p) / time.Duration(cfg.Publishers))
	time.Sleep(time.Until(next))
	for pos := 0; time.Now().Before(pr.end) && ctx.Err() == nil; {
		select {
		case <-pr.stop:
			return nil
		default:
		}
		for i := range items {
			k := (pos + i) % len(owned)
			items[i] = item{stream: owned[k], seq: seq[k] + 1}
		}
		err := s.send(items)
		switch {
		case isFatal(err):
			return err
		case err != nil:
			pr.errs.Add(int64(len(items)))
		default:
			for i, it := range items {
				if it.failed { // its sequence number is sent again
					pr.errs.Add(1)
					continue
				}
				seq[(pos+i)%len(owned)]++
				pr.sent[it.stream].Add(1)
				pr.published.Add(1)
			}
		}
		pos = (pos + batch) % len(owned)
		next = next.Add(interval)
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
	}
	return nil
}

// report closes the senders and collects what they did into rep.
func (pr *pubRun) report(rep *pubReport, senders []sender) {
	rep.sent = make([]int64, len(pr.sent))
	for i := range pr.sent {
		rep.sent[i] = pr.sent[i].Load()
	}
	rep.errors = pr.errs.Load()
	for _, s := range senders {
		s.close() // WebSocket senders count error replies until closed
		if a, ok := s.(*apiSender); ok {
			rep.requests += a.requests
			rep.delivered += a.delivered
			rep.api.Merge(a.rtt)
		}
		if w, ok := s.(*wsSender); ok {
			rep.errors += w.refused.Load()
		}
	}
}

// newSender opens publisher p's transport.
func newSender(ctx context.Context, cfg Config, p int) (sender, error) {
	if cfg.PublishURL != "" {
		return newAPISender(cfg, p)
	}
	return newWSSender(ctx, cfg, p)
}

// A message's sequence field carries its publisher in the top 16 bits, so
// each subscriber checks order per publisher.
func joinSeq(pub int, n uint64) uint64 { return uint64(pub)<<48 | n }
func splitSeq(v uint64) (int, uint64)  { return int(v >> 48), v & (1<<48 - 1) }

// stamp writes the send time and sequence into the first 16 bytes of p.
// fillJSON fills b with JSON text as a price feed sends it (an order
// book's levels), so that a compressed run compresses what real fan-out
// traffic carries (about 3x at flate level 5), not zeros.
func fillJSON(b []byte) {
	j := []byte(`{"type":"book","channel":"prices.BTC-USD","ts":1764600000123,"bids":[`)
	for i := 0; len(j) < len(b); i++ {
		j = fmt.Appendf(j, `{"px":"%d.%02d","qty":"%d.%03d","n":%d},`, 91234-i*3, (i*37)%100, 1+i%7, (i*7919)%1000, 1+i%5)
	}
	copy(b, j)
	if len(b) > 0 {
		b[len(b)-1] = '}'
	}
}

func stamp(p []byte, seq uint64) {
	binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(p[8:], seq)
}
