package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/frame"
)

// publish runs cfg.Publishers publisher connections, spread over the
// target URLs round-robin, each sending cfg.Rate messages per second for
// cfg.Duration, then waits cfg.Drain for the last deliveries. It returns
// the messages each publisher sent.
func publish(ctx context.Context, cfg Config, progress io.Writer) ([]int64, error) {
	var wg sync.WaitGroup
	sent := make([]atomic.Int64, cfg.Publishers)
	errs := make(chan error, cfg.Publishers)
	end := time.Now().Add(cfg.Duration)
	for p := range cfg.Publishers {
		target := cfg.URLs[p%len(cfg.URLs)]
		nc, _, err := newDialer(cfg).dial(ctx, target, 1000+p)
		if err != nil {
			return nil, fmt.Errorf("bench: publisher %d for %s: %w", p, hostOf(target), err)
		}
		defer nc.Close()
		go func() { _, _ = io.Copy(io.Discard, nc) }() // the room sends to us too
		wg.Add(1)
		go func() {
			defer wg.Done()
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			next := time.Now()
			key := [4]byte{0x5a, 0x17, 0x3c, byte(p)}
			payload := make([]byte, cfg.Size)
			for n := uint64(1); time.Now().Before(end) && ctx.Err() == nil; n++ {
				stamp(payload, joinSeq(p, n))
				if _, err := nc.Write(frame.AppendClientFrame(nil, frame.OpBinary, payload, key)); err != nil {
					errs <- fmt.Errorf("bench: publisher %d to %s: %w", p, hostOf(target), err)
					return
				}
				sent[p].Store(int64(n))
				next = next.Add(interval)
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				}
			}
		}()
	}
	total := func() (n int64) {
		for i := range sent {
			n += sent[i].Load()
		}
		return n
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			fmt.Fprintf(progress, "\rpublished %d; draining %v  ", total(), cfg.Drain)
			sleep(ctx, cfg.Drain)
			out := make([]int64, len(sent))
			for i := range sent {
				out[i] = sent[i].Load()
			}
			select {
			case err := <-errs:
				return out, err
			default:
			}
			return out, nil
		case <-tick.C:
			fmt.Fprintf(progress, "\rpublished %d  ", total())
		}
	}
}

// A message's sequence field carries its publisher in the top 16 bits, so
// each subscriber checks order per publisher.
func joinSeq(pub int, n uint64) uint64 { return uint64(pub)<<48 | n }
func splitSeq(v uint64) (int, uint64)  { return int(v >> 48), v & (1<<48 - 1) }

// stamp writes the send time and sequence into the first 16 bytes of p.
func stamp(p []byte, seq uint64) {
	binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(p[8:], seq)
}
