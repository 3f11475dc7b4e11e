package pubsub_test

import (
	"sync"
	"testing"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
)

// The memory broker passes the conformance suite: its nodes are nodes in
// one process, sharing one MemoryBroker.
func TestMemoryBroker_Conformance(t *testing.T) {
	pubsubtest.Run(t, pubsubtest.Suite{Deploy: func(*testing.T) pubsubtest.Deployment {
		var once sync.Once
		var b *pubsub.MemoryBroker
		return pubsubtest.Deployment{Broker: func(_ *testing.T, o pubsub.BrokerOptions) pubsub.Broker {
			once.Do(func() { b = pubsub.NewMemoryBroker(o) })
			return b
		}}
	}})
}
