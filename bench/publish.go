package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// publish sends cfg.Rate messages per second to each target URL from one
// publisher connection per URL for cfg.Duration, then waits cfg.Drain for
// the last deliveries. It returns the messages sent per target (the same
// for every target).
func publish(ctx context.Context, cfg Config, progress io.Writer) (int64, error) {
	var wg sync.WaitGroup
	var sent atomic.Int64
	errs := make(chan error, len(cfg.URLs))
	end := time.Now().Add(cfg.Duration)
	for i, target := range cfg.URLs {
		u, err := url.Parse(target)
		if err != nil {
			return 0, err
		}
		nc, _, err := (dialer{sources: cfg.SourceIPs}).dial(ctx, target, 1000+i)
		if err != nil {
			return 0, fmt.Errorf("bench: publisher for %s: %w", u.Host, err)
		}
		defer nc.Close()
		go func() { _, _ = io.Copy(io.Discard, nc) }() // the room sends to us too
		wg.Add(1)
		go func(first bool) {
			defer wg.Done()
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			next := time.Now()
			var seq uint64
			key := [4]byte{0x5a, 0x17, 0x3c, 0x99}
			payload := make([]byte, cfg.Size)
			for time.Now().Before(end) && ctx.Err() == nil {
				seq++
				stamp(payload, seq)
				if _, err := nc.Write(frame.AppendClientFrame(nil, frame.OpBinary, payload, key)); err != nil {
					errs <- fmt.Errorf("bench: publish to %s: %w", u.Host, err)
					return
				}
				if first {
					sent.Store(int64(seq))
				}
				next = next.Add(interval)
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				}
			}
		}(i == 0)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			fmt.Fprintf(progress, "\rpublished %d per target; draining %v  ", sent.Load(), cfg.Drain)
			sleep(ctx, cfg.Drain)
			select {
			case err := <-errs:
				return sent.Load(), err
			default:
			}
			return sent.Load(), nil
		case <-tick.C:
			fmt.Fprintf(progress, "\rpublished %d per target  ", sent.Load())
		}
	}
}

// stamp writes the send time and sequence into the first 16 bytes of p.
func stamp(p []byte, seq uint64) {
	binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(p[8:], seq)
}
