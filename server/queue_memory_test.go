package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// liveHeapPeak samples the live heap (after a GC) until stop is closed and
// returns its peak above the level when it started.
func liveHeapPeak(stop <-chan struct{}) <-chan uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		for {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
				peak = ms.HeapAlloc - base
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

// dialSilent upgrades a connection to path that will never read again; its
// small receive buffer makes the server's socket fill after a few KiB.
func dialSilent(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	rc.upgrade(path, nil)
	return nc
}

// flood writes copies of one client frame to nc until stop says so or
// limit bytes went out; it returns the bytes written.
func flood(nc net.Conn, f []byte, limit int, stop func() bool) int {
	batch := bytes.Repeat(f, 64<<10/len(f))
	sent := 0
	for sent < limit && !stop() {
		_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := nc.Write(batch[sent%len(batch):]) // a timed-out write may stop mid-frame
		sent += n
		if err != nil && !isTimeout(err) {
			break // closed by the server
		}
	}
	return sent
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSendQueue_EmptyPingFlood floods a /echo connection that never reads
// with empty pings: each pong is queued, and a queue of 2-byte frames must
// still be bounded by SendQueueBytes in real memory (every queued frame is
// charged its slice header and allocation, not its 2 bytes), and the
// connection evicted.
func TestSendQueue_EmptyPingFlood(t *testing.T) {
	const queue = 256 << 10
	s, addr := runServer(t, Config{SendQueueBytes: queue, MaxMessageBytes: 64 << 10, PingInterval: -1, IdleTimeout: -1})
	nc := dialSilent(t, addr, "/echo")

	stop := make(chan struct{})
	peak := liveHeapPeak(stop)
	evicted := func() bool { return s.Stats().SlowConsumers > 0 }
	sent := flood(nc, clientFrame(true, ws.OpPing, nil), 64<<20, evicted)
	eventually(t, 10*time.Second, func() error {
		if !evicted() {
			return fmt.Errorf("not evicted after %d bytes of pings", sent)
		}
		return nil
	})
	close(stop)
	// The queue's bound, plus room for read buffers and runtime noise.
	got := <-peak
	t.Logf("live heap peak +%d KiB", got>>10)
	if budget := uint64(queue + 2<<20); got > budget && !raceEnabled {
		t.Errorf("live heap grew %d KiB during the flood, budget %d KiB (SendQueueBytes %d KiB)", got>>10, budget>>10, queue>>10)
	}
}

// TestHub_EmptyBroadcastFloodSilentMembers has one client broadcast empty
// messages to 50 members that never read. Each member's queue is bounded
// in real memory by SendQueueBytes, so the live heap stays within 50 x
// SendQueueBytes (plus the hub's pause bound), every member is evicted,
// and the publisher, paused instead of dropped, keeps its connection.
func TestHub_EmptyBroadcastFloodSilentMembers(t *testing.T) {
	const (
		members = 50
		queue   = 256 << 10
	)
	s, addr := runServer(t, Config{SendQueueBytes: queue, MaxMessageBytes: 64 << 10, PingInterval: -1, IdleTimeout: -1})
	for range members {
		dialSilent(t, addr, "/ws")
	}
	pub := dialRaw(t, addr)
	pub.upgrade("/ws", nil)
	_ = pub.nc.SetDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, pub.br) }() // the publisher reads its own broadcasts

	stop := make(chan struct{})
	peak := liveHeapPeak(stop)
	evicted := func() bool { return s.Stats().SlowConsumers >= members }
	sent := flood(pub.nc, clientFrame(true, ws.OpBinary, nil), 256<<20, evicted)
	eventually(t, 20*time.Second, func() error {
		if st := s.Stats(); st.SlowConsumers < members {
			return fmt.Errorf("%d of %d silent members evicted after %d bytes of broadcasts", st.SlowConsumers, members, sent)
		}
		return nil
	})
	close(stop)
	got := <-peak
	t.Logf("live heap peak +%d KiB", got>>10)
	if budget := uint64(members*queue + hubPauseBytes + 4<<20); got > budget && !raceEnabled {
		t.Errorf("live heap grew %d KiB during the flood, budget %d KiB (%d members x SendQueueBytes %d KiB)", got>>10, budget>>10, members, queue>>10)
	}
	if st := s.Stats(); st.BroadcastDrops != 0 {
		t.Errorf("%d broadcasts dropped; the publisher should have been paused instead", st.BroadcastDrops)
	}
	if n := onlyHub(t, s).Len(); n != 1 {
		t.Errorf("hub has %d members after the flood, want the publisher alone", n)
	}
}
