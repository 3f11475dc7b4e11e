package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
)

// commandCalls reads how many times Redis ran cmd (INFO commandstats).
func commandCalls(t *testing.T, rdb *goredis.Client, cmd string) int {
	t.Helper()
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(stats, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// Three nodes, channel i's subscribers on node i%3 only: each node holds a
// Redis subscription for its own channels alone, Redis counts one
// subscriber per channel, every message reaches its subscribers, and no
// node receives a message none of its clients wanted. Once the clients
// leave, the sweep gives the subscriptions back.
func TestRedis_InterestRouting(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	interestRouting(t, r.URL(), func(topic string) int64 {
		return rdb.PubSubNumSub(context.Background(), topic).Val()[topic]
	})
}

// The same on a cluster, where the subscriptions are sharded: each on the
// master of its channel's slot group.
func TestCluster_InterestRouting(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	masters := masterClients(t, c)
	interestRouting(t, c.URL(), func(topic string) int64 {
		n := int64(0)
		for _, m := range masters {
			n += m.PubSubShardNumSub(context.Background(), topic).Val()[topic]
		}
		return n
	})
}

// interestRouting is TestRedis_InterestRouting on the Redis at url, whose
// numsub counts a topic's subscribers.
func interestRouting(t *testing.T, url string, numsub func(topic string) int64) {
	nodes := []*node{runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{}), runNode(t, url, pubsub.Config{})}
	waitReady(t, nodes...)
	const channels = 30
	subs := make([]*websocket.Conn, channels)
	for i := range channels {
		subs[i] = dialNode(t, nodes[i%3], fmt.Sprintf("?channel=room-%d", i))
		if e := readEvent(t, subs[i]); e.Type != "subscribed" {
			t.Fatalf("room-%d: %+v", i, e)
		}
	}
	for i := range channels { // published on every node, for every channel
		for _, n := range nodes {
			if _, err := n.Publish(fmt.Sprintf("room-%d", i), []byte(`"hi"`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, c := range subs {
		for off := uint64(1); off <= 3; off++ {
			if e := readEvent(t, c); e.Type != "message" || e.Offset != off {
				t.Fatalf("room-%d: got %+v, want offset %d", i, e, off)
			}
		}
	}
	for i, n := range nodes { // its channels, and the node bus
		if st := n.Stats(); st.UnwantedMessages != 0 || st.Subscriptions != channels/3+1 {
			t.Errorf("node %d: %d unwanted messages, %d subscriptions; want 0 and %d", i, st.UnwantedMessages, st.Subscriptions, channels/3+1)
		}
	}
	b := newBroker(t, url, pubsub.BrokerOptions{}) // for the topics' names
	for _, ch := range []string{"room-0", "room-1"} {
		if got := numsub(b.topic(ch)); got != 1 {
			t.Fatalf("%s has %d Redis subscribers, want one (node)", ch, got)
		}
	}
	for _, c := range subs {
		c.Close()
	}
	eventually(t, 10*time.Second, func() error {
		if got := numsub(b.topic("room-0")); got != 0 {
			return fmt.Errorf("room-0 still has %d Redis subscribers", got)
		}
		for i, n := range nodes {
			if st := n.Stats(); st.Subscriptions != 1 { // the node bus
				return fmt.Errorf("node %d holds %d subscriptions, want 1 (the node bus)", i, st.Subscriptions)
			}
		}
		return nil
	})
}

// A thousand new channels joined at once cost a few SUBSCRIBE commands,
// not one each: routes are batched at most every routeInterval.
func TestRedis_RoutesBatched(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	calls, flushes := routesBatched(t, r.URL(), func() int { return commandCalls(t, rdb, "subscribe") })
	if calls > flushes+2 || calls >= 100 {
		t.Fatalf("%d SUBSCRIBE commands for 1,000 channels, want at most %d", calls, flushes+2)
	}
}

// On a cluster, each slot group flushes its own: at most one SSUBSCRIBE
// per group (and its probe's first) every routeInterval.
func TestCluster_RoutesBatched(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	masters := masterClients(t, c)
	calls, flushes := routesBatched(t, c.URL(), func() int {
		n := 0
		for _, m := range masters {
			n += commandCalls(t, m, "ssubscribe")
		}
		return n
	})
	if limit := clusterGroups * (flushes + 3); calls > limit || calls >= 500 {
		t.Fatalf("%d SSUBSCRIBE commands for 1,000 channels, want at most %d", calls, limit)
	}
}

// routesBatched joins 1,000 new channels on one node on the Redis at url
// at once, and returns calls() after, with the most flushes the time taken
// allows.
func routesBatched(t *testing.T, url string, calls func() int) (int, int) {
	n := runNode(t, url, pubsub.Config{})
	waitReady(t, n)
	const conns, perConn = 100, 10
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := ""
			for j := range perConn {
				q += fmt.Sprintf("&channel=c-%d-%d", i, j)
			}
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+n.Addr+"/ws?"+q[1:], nil)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for range perConn {
				var e struct{ Type string }
				if err := c.ReadJSON(&e); err != nil || e.Type != "subscribed" {
					errs <- fmt.Errorf("%v %+v", err, e)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	got := calls()
	t.Logf("%d channels joined in %v with %d subscribe commands", conns*perConn, elapsed, got)
	return got, int(elapsed / routeInterval)
}

// A publisher races the joins of the channels it publishes to: each
// joiner, the first subscriber on its node, gets every message after its
// subscribed offset once, in order, with no gap notice, although the
// history (5 messages) is shorter than what is published while its route
// takes effect.
func TestRedis_JoinRacesPublisher(t *testing.T) {
	t.Parallel()
	joinRacesPublisher(t, redistest.Start(t).URL())
}

// The same on a cluster, the channels over its slot groups.
func TestCluster_JoinRacesPublisher(t *testing.T) {
	t.Parallel()
	joinRacesPublisher(t, redistest.StartCluster(t, 3).URL())
}

func joinRacesPublisher(t *testing.T, url string) {
	cfg := pubsub.Config{HistorySize: 5}
	pub, sub := runNode(t, url, cfg), runNode(t, url, cfg)
	waitReady(t, pub, sub)
	const channels = 20
	stop := make(chan struct{})
	last := make([]atomic.Uint64, channels)
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			ch := i % channels
			p, err := pub.Publish(fmt.Sprintf("race-%d", ch), []byte(`"m"`))
			if err != nil {
				done <- err
				return
			}
			last[ch].Store(p.Offset)
		}
	}()
	type joined struct {
		c    *websocket.Conn
		from uint64
	}
	var subs []joined
	for i := range channels {
		c := dialNode(t, sub, fmt.Sprintf("?channel=race-%d", i))
		e := readEvent(t, c)
		if e.Type != "subscribed" {
			t.Fatalf("race-%d: %+v", i, e)
		}
		subs = append(subs, joined{c, e.Offset})
	}
	eventually(t, 10*time.Second, func() error { // a few messages after the last join
		if at := last[channels-1].Load(); at < subs[channels-1].from+20 {
			return fmt.Errorf("publisher at %d", at)
		}
		return nil
	})
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		for off := s.from + 1; off <= last[i].Load(); off++ {
			if e := readEvent(t, s.c); e.Type != "message" || e.Offset != off {
				t.Fatalf("race-%d (joined at %d): got %+v, want offset %d", i, s.from, e, off)
			}
		}
	}
	if st := sub.Stats(); st.UnwantedMessages != 0 {
		t.Errorf("%d unwanted messages", st.UnwantedMessages)
	}
}
