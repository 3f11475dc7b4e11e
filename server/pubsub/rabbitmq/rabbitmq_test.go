package rabbitmq

import (
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/internal/wstest"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/gorilla/websocket"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/amqp"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/message"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"
)

var eventually = testutil.Eventually

// The RabbitMQ broker passes the conformance suite, each scenario on a
// stream of its own on the package's one rabbitmq-server (the scenarios
// that stop it run first, one at a time).
func TestRabbitMQ_Conformance(t *testing.T) {
	pubsubtest.Run(t, pubsubtest.Suite{Shared: true, ReadyTimeout: 20 * time.Second, Deploy: func(t *testing.T) pubsubtest.Deployment {
		url := streamURL(t)
		return pubsubtest.Deployment{
			Broker: func(t *testing.T, o pubsub.BrokerOptions) pubsub.Broker {
				o.Logger = testLogger()
				b, err := New(url, o)
				if err != nil {
					t.Fatal(err)
				}
				return b // its connection ends with the node
			},
			Stop: func(*testing.T) { rmq.Stop() },
			Start: func(t *testing.T) {
				if err := rmq.Start(); err != nil {
					t.Fatal(err)
				}
			},
			Wipe: func(t *testing.T) {
				if err := rmq.Wipe(); err != nil {
					t.Fatal(err)
				}
			},
			PublishExternal: func(t *testing.T, channel, data string) { publishExternal(t, url, channel, data) },
		}
	}})
}

// runNode serves channels on 127.0.0.1:0 with a Broker on url until
// cleanup.
func runNode(t *testing.T, url string, cfg pubsub.Config) *pubsubtest.Node {
	t.Helper()
	return runNodeBytes(t, url, cfg, 0)
}

// runNodeBytes is runNode with the stream's retention by size
// (BrokerOptions.RetentionBytes; 0 for the default).
func runNodeBytes(t *testing.T, url string, cfg pubsub.Config, retentionBytes int64) *pubsubtest.Node {
	t.Helper()
	b, err := New(url, pubsub.BrokerOptions{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL,
		HistoryMaxBytes: cfg.HistoryMaxBytes, MaxChannels: cfg.MaxChannels, RetentionBytes: retentionBytes, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = b
	return pubsubtest.Serve(t, server.Config{}, cfg)
}

func waitReady(t *testing.T, nodes ...*pubsubtest.Node) {
	t.Helper()
	pubsubtest.WaitReady(t, 20*time.Second, nodes...)
}

func dialNode(t *testing.T, n *pubsubtest.Node, query string) *websocket.Conn {
	t.Helper()
	return wstest.DialGorilla(t, "ws://"+n.Addr+"/ws"+query)
}

// publishExternal writes a message to the stream as any stream client
// would: a JSON body with a "channel" application property.
func publishExternal(t *testing.T, rawURL, channel, data string) {
	t.Helper()
	base, name, _ := strings.Cut(rawURL, "/?stream=")
	env, err := stream.NewEnvironment(stream.NewEnvironmentOptions().SetUri(base + "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	prod, err := env.NewProducer(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := amqp.NewMessage([]byte(data))
	m.ApplicationProperties = map[string]any{"channel": channel}
	if err := prod.BatchSend([]message.StreamMessage{m}); err != nil {
		t.Fatal(err)
	}
}
