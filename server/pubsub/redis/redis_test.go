package redis

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/internal/wstest"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var (
	eventually  = testutil.Eventually
	dialGorilla = wstest.DialGorilla
	readEvent   = wstest.ReadEvent
	sendJSON    = wstest.SendJSON
)

// The Redis broker passes the conformance suite, each scenario on a
// redis-server of its own (with an append-only file, so that a restart can
// keep its data; Wipe drops it).
func TestRedis_Conformance(t *testing.T) {
	pubsubtest.Run(t, pubsubtest.Suite{Deploy: func(t *testing.T) pubsubtest.Deployment {
		r := redistest.StartPersistent(t)
		return pubsubtest.Deployment{
			Broker: func(t *testing.T, o pubsub.BrokerOptions) pubsub.Broker {
				b, err := New(r.URL(), o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = b.Close() }) // registered before the node's: runs after
				return b
			},
			Stop:  func(*testing.T) { r.Stop() },
			Start: func(*testing.T) { r.Start() },
			Wipe:  func(*testing.T) { r.Wipe() },
			PublishExternal: func(t *testing.T, channel, data string) { // a plain PUBLISH: no offset, no history
				ext := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
				defer ext.Close()
				if err := ext.Publish(context.Background(), "fanout:msg:"+channel, data).Err(); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

// node is a server with channels on a Redis broker.
type node struct {
	*pubsubtest.Node
	logs *testutil.SyncBuffer // the broker's
}

// runNode serves channels on 127.0.0.1:0 with a Broker on url until
// cleanup.
func runNode(t *testing.T, url string, cfg pubsub.Config) *node {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	b, err := New(url, pubsub.BrokerOptions{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, HistoryMaxBytes: cfg.HistoryMaxBytes, MaxChannels: cfg.MaxChannels, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = b
	cfg.HistorySize, cfg.HistoryTTL = 0, 0 // the broker's
	t.Cleanup(func() { _ = b.Close() })    // registered first, so it runs last
	return &node{Node: pubsubtest.Serve(t, server.Config{}, cfg), logs: logs}
}

func waitReady(t *testing.T, nodes ...*node) {
	t.Helper()
	ns := make([]*pubsubtest.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = n.Node
	}
	pubsubtest.WaitReady(t, 10*time.Second, ns...)
}

func dialNode(t *testing.T, n *node, query string) *websocket.Conn {
	t.Helper()
	return dialGorilla(t, "ws://"+n.Addr+"/ws"+query)
}

// Once a node delivers a channel, more subscribers there cost the broker
// nothing: a reconnect storm is two Redis calls per channel and node (and
// one SUBSCRIBE).
func TestRedis_SubscribersShareOneBrokerCall(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	s := runNode(t, r.URL(), pubsub.Config{})
	waitReady(t, s)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var subs []*websocket.Conn
	for range 20 {
		c := dialNode(t, s, "?channel=storm")
		if e := readEvent(t, c); e.Type != "subscribed" || e.Epoch == "" {
			t.Fatalf("got %+v", e)
		}
		subs = append(subs, c)
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for line := range strings.SplitSeq(stats, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_eval"); ok { // eval and evalsha
			_, rest, _ = strings.Cut(rest, "calls=")
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			calls += n
		}
	}
	// Two script runs: the first subscribe's check, and its history read
	// once the route is live; a first EVALSHA may miss the script cache.
	if calls == 0 || calls > 3 {
		t.Fatalf("%d script calls for 20 subscribers of one channel\n%s", calls, stats)
	}
	if _, err := s.Publish("storm", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		if e := readEvent(t, c); e.Type != "message" || e.Offset != 1 {
			t.Fatalf("got %+v", e)
		}
	}
}
