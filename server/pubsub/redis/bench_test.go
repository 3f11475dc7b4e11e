package redis

import (
	"context"
	"testing"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
)

// BenchmarkPublish publishes from 64 goroutines of one node through the
// in-process broker, through Redis (a real redis-server) pipelined, and
// through Redis one script call per publish as before pipelining.
func BenchmarkPublish(b *testing.B) {
	r := redistest.Start(b)
	rb, err := New(r.URL(), pubsub.BrokerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rb.Close() })
	mem := pubsub.NewMemoryBroker(pubsub.BrokerOptions{})
	data := []byte(`{"text":"a 64-byte message, more or less, for the benchmark"}`)
	for _, bc := range []struct {
		name    string
		publish func() error
	}{
		{"broker=memory", func() error { _, err := mem.Publish(context.Background(), "bench", data); return err }},
		{"broker=redis/pipeline=on", func() error { _, err := rb.Publish(context.Background(), "bench", data); return err }},
		{"broker=redis/pipeline=off", func() error {
			return publishScript.Run(context.Background(), rb.rdb, rb.keys("bench"), rb.publishArgs("bench", data)...).Err()
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 publishers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.publish(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
