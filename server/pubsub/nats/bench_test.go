package nats

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/nats/natstest"
)

// BenchmarkPublish publishes from 64 goroutines of one node through a real
// nats-server with JetStream, to one channel (one publish in flight: each
// waits for the last one's sequence) and spread over 100 (concurrent).
func BenchmarkPublish(b *testing.B) {
	s := natstest.Start(b)
	nb, err := New(s.URL(), pubsub.BrokerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	nb.Start(ctx, func(pubsub.Message) {}, func() {})
	for deadline := time.Now().Add(10 * time.Second); !nb.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("not ready after 10 s")
		}
	}
	data := []byte(`{"text":"a 64-byte message, more or less, for the benchmark"}`)
	var channels [100]string
	for i := range channels {
		channels[i] = "bench-" + strconv.Itoa(i)
	}
	var next atomic.Uint32
	for _, k := range []uint32{1, 100} {
		b.Run("channels="+strconv.Itoa(int(k)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 publishers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := nb.Publish(context.Background(), channels[next.Add(1)%k], data); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
