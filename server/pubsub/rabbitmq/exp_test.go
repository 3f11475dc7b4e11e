package rabbitmq

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
)

func TestExpMeasure1(t *testing.T) {
	url := streamURL(t) + "&max-length-bytes=67108864"
	cfg := pubsub.Config{HistoryMaxBytes: 4 << 20}
	a, b := runNode(t, url, cfg), runNode(t, url, cfg)
	waitReady(t, a, b)
	for _, size := range []int{10, 16_000, 32_000, 60_000} {
		var ds []time.Duration
		data := []byte(`"` + strings.Repeat("x", size) + `"`)
		for range 10 {
			s := time.Now()
			if _, err := a.Publish("m", data); err != nil {
				t.Log(err)
			}
			ds = append(ds, time.Since(s))
		}
		t.Logf("alone: %d B median %v", size, median(ds))
	}
	stop := make(chan struct{})
	for i := range 3 {
		c := dialNode(t, a, "")
		go func() { _ = flood(c, fmt.Sprintf("junk-%d", i), 60_000, stop, make(chan time.Duration)) }()
	}
	defer close(stop)
	time.Sleep(2 * time.Second)
	var ds []time.Duration
	fails := 0
	for range 20 {
		s := time.Now()
		if _, err := b.Node.Publish("small", []byte("1")); err != nil {
			fails++
		}
		ds = append(ds, time.Since(s))
	}
	t.Logf("under flood: 1 B median %v, %d of 20 failed", median(ds), fails)
}
