package server

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/frame"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkBroadcast fans b.N messages out to subs loopback subscribers and
// waits until every byte arrived (the queues are drained before the timer
// stops). It reports deliveries/s, serializations per message (always 1:
// one frame.Prepared per Broadcast, however many receivers) and write
// syscalls per delivery (below 1 once queued frames coalesce into one
// writev).
func BenchmarkBroadcast(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		for _, size := range []int{32, 1024, 16384} {
			b.Run("subs="+strconv.Itoa(subs)+"/size="+strconv.Itoa(size), func(b *testing.B) {
				benchBroadcast(b, subs, size)
			})
		}
	}
}

// BenchmarkBroadcastMetrics measures what Prometheus costs: the same fan-out
// with nothing registered, and registered and scraped every 10 ms.
func BenchmarkBroadcastMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run("metrics="+strconv.FormatBool(on), func(b *testing.B) {
			var reg *prometheus.Registry
			if on {
				reg = prometheus.NewRegistry()
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(10 * time.Millisecond):
							_, _ = reg.Gather()
						}
					}
				}()
			}
			benchBroadcastWith(b, 1000, 32, reg, 0)
		})
	}
}

// BenchmarkHubFlushBurst broadcasts bursts of messages to 1,000 loopback
// subscribers and waits for each burst to arrive before the next. Since a
// broadcast only appends to the hub and the flush takes everything
// pending, the frames per writev grow with the burst (reported as
// frames/write) and the writes per delivery fall.
func BenchmarkHubFlushBurst(b *testing.B) {
	for _, burst := range []int{1, 16, 256} {
		b.Run("subs=1000/burst="+strconv.Itoa(burst), func(b *testing.B) {
			benchBroadcastWith(b, 1000, 64, nil, burst)
		})
	}
}

func benchBroadcast(b *testing.B, subs, size int) { benchBroadcastWith(b, subs, size, nil, 0) }

// benchBroadcastWith broadcasts b.N messages of size bytes to subs
// subscribers; with burst > 0 it waits for every burst of that many to
// arrive before sending the next.
func benchBroadcastWith(b *testing.B, subs, size int, reg *prometheus.Registry, burst int) {
	cfg := Config{SendQueueBytes: 64 << 20, MaxMessageBytes: 1 << 20, PingInterval: -1, IdleTimeout: -1}
	if reg != nil {
		cfg.Registerer = reg
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	hub := s.NewHub()
	var joined sync.WaitGroup
	joined.Add(subs)
	s.cfg.OnConnect = func(c *Conn, _ *Request) error {
		defer joined.Done()
		return hub.Join(c)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	<-s.Ready()
	defer s.Close()

	var received atomic.Int64
	conns := make([]net.Conn, subs)
	for i := range conns {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		if _, err := nc.Write([]byte(upgradeRequest("/"))); err != nil {
			b.Fatal(err)
		}
		conns[i] = nc
	}
	joined.Wait()
	for _, nc := range conns {
		go func() {
			buf := make([]byte, 64<<10)
			var head []byte // the 101 response: not counted
			gotHead := false
			for {
				n, err := nc.Read(buf)
				if err != nil {
					return
				}
				data := buf[:n]
				if !gotHead {
					head = append(head, data...)
					end := headerEnd(head)
					if end < 0 {
						continue
					}
					gotHead, data = true, head[end:]
				}
				received.Add(int64(len(data)))
			}
		}()
	}
	payload := make([]byte, size)
	frameLen := int64(len(frame.AppendFrame(nil, frame.OpBinary, payload)))
	before := s.Stats()
	b.SetBytes(int64(size) * int64(subs))
	b.ReportAllocs()
	b.ResetTimer()
	arrived := func(msgs int) {
		for received.Load() < int64(msgs)*int64(subs)*frameLen {
			time.Sleep(50 * time.Microsecond)
		}
	}
	for i := 0; i < b.N; i++ {
		hub.Broadcast(frame.OpBinary, payload)
		if burst > 0 && (i+1)%burst == 0 {
			arrived(i + 1)
		}
	}
	arrived(b.N)
	b.StopTimer()
	after := s.Stats()
	deliveries := float64(b.N) * float64(subs)
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(after.Broadcasts-before.Broadcasts)/float64(b.N), "serializations/msg")
	b.ReportMetric(float64(after.WriteCalls-before.WriteCalls)/deliveries, "writes/delivery")
	b.ReportMetric(float64(after.FramesOffered-before.FramesOffered)/float64(after.WriteCalls-before.WriteCalls), "frames/write")
}
