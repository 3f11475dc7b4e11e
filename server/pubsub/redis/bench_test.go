package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
)

// BenchmarkPublish publishes from 64 goroutines of one node through the
// in-process broker, through Redis (a real redis-server) pipelined, to one
// channel and spread over 100, and through Redis one script call per
// publish as before pipelining; with the CPU time Redis spent per message.
func BenchmarkPublish(b *testing.B) {
	r := redistest.Start(b)
	rb, err := New(r.URL(), pubsub.BrokerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rb.Close() })
	mem := pubsub.NewMemoryBroker(pubsub.BrokerOptions{})
	data := []byte(`{"text":"a 64-byte message, more or less, for the benchmark"}`)
	var channels [100]string
	for i := range channels {
		channels[i] = "bench-" + strconv.Itoa(i)
	}
	var next atomic.Uint32
	for _, bc := range []struct {
		name    string
		publish func() error
	}{
		{"broker=memory", func() error { _, err := mem.Publish(context.Background(), "bench", data); return err }},
		{"broker=redis/pipeline=on/channels=1", func() error { _, err := rb.Publish(context.Background(), "bench", data); return err }},
		{"broker=redis/pipeline=on/channels=100", func() error {
			_, err := rb.Publish(context.Background(), channels[next.Add(1)%100], data)
			return err
		}},
		{"broker=redis/pipeline=off/channels=1", func() error {
			keys, args := rb.publishCall([]pubsub.Message{{Channel: "bench", Data: data}})
			return publishScript.Run(context.Background(), rb.rdb, keys, args...).Err()
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := r.CPU()
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
			if bc.name != "broker=memory" {
				b.ReportMetric(float64((r.CPU()-cpu).Microseconds())/float64(b.N), "redis-cpu-us/msg")
			}
		})
	}
}
