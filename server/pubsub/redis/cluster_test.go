package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// The cluster broker passes the conformance suite on a cluster of three
// masters, each scenario under a key prefix of its own (the scenarios that
// stop the cluster, killing every master, run first, one at a time). The
// channel cap is split over the slot groups, so the exact count of the
// churn scenario does not hold (TestCluster_CapPerGroup tests the split).
func TestCluster_Conformance(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	var n atomic.Int32
	pubsubtest.Run(t, pubsubtest.Suite{
		Shared: true,
		Skip:   map[string]string{"ChannelChurnLockout": "the channel cap holds per slot group in a cluster"},
		Deploy: func(t *testing.T) pubsubtest.Deployment {
			prefix := fmt.Sprintf("t%d:", n.Add(1))
			return pubsubtest.Deployment{
				Broker: func(t *testing.T, o pubsub.BrokerOptions) pubsub.Broker {
					o.Prefix = prefix
					return newBroker(t, c.URL(), o)
				},
				Stop:  func(*testing.T) { c.Stop() },
				Start: func(*testing.T) { c.Start() },
				Wipe:  func(*testing.T) { c.Wipe() },
				PublishExternal: func(t *testing.T, channel, data string) { // a plain SPUBLISH: no offset, no history
					b := newBroker(t, c.URL(), pubsub.BrokerOptions{Prefix: prefix})
					if err := b.cluster.SPublish(context.Background(), b.topic(channel), data).Err(); err != nil {
						t.Fatal(err)
					}
				},
			}
		},
	})
}

// newBroker is a Broker on url, closed at cleanup.
func newBroker(t *testing.T, url string, o pubsub.BrokerOptions) *Broker {
	t.Helper()
	b, err := New(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // registered before the node's: runs after
	return b
}

// masterClients are plain clients of each master, closed at cleanup.
func masterClients(t *testing.T, c *redistest.Cluster) []*goredis.Client {
	t.Helper()
	var out []*goredis.Client
	for _, m := range c.Masters {
		rdb := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		out = append(out, rdb)
	}
	return out
}

// Channels land on every master: each channel's keys (offset, epoch,
// history) and its budget keys sit together on the master that owns its
// group's slot, and slot agrees with CLUSTER KEYSLOT.
func TestCluster_ChannelsSpread(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	masters := masterClients(t, c)
	ctx := context.Background()
	for _, name := range []string{"a", "room-1", "$fanout.nodes", "ünïcode"} { // no {tag}: CLUSTER KEYSLOT would hash only that
		if want := masters[0].ClusterKeySlot(ctx, name).Val(); int64(slot(name)) != want {
			t.Fatalf("slot(%q) = %d, CLUSTER KEYSLOT %d", name, slot(name), want)
		}
	}
	b := newBroker(t, c.URL(), pubsub.BrokerOptions{})
	const channels = 60
	perMaster := make([]int, len(masters))
	for i := range channels {
		ch := fmt.Sprintf("spread-%d", i)
		if _, err := b.Publish(ctx, ch, []byte(`"x"`)); err != nil {
			t.Fatal(err)
		}
		keys := append(b.keys(ch), b.space(ch).prefix+"chans")
		holder := -1
		for m, rdb := range masters {
			n := rdb.Exists(ctx, keys...).Val()
			switch {
			case n == int64(len(keys)):
				holder = m
			case n != 0:
				t.Fatalf("%s: master %d holds %d of %v", ch, m, n, keys)
			}
		}
		if holder < 0 {
			t.Fatalf("%s: no master holds %v", ch, keys)
		}
		perMaster[holder]++
	}
	for m, n := range perMaster {
		if n == 0 {
			t.Fatalf("master %d holds none of %d channels (%v)", m, channels, perMaster)
		}
	}
	t.Logf("channels per master: %v", perMaster)
}

// channelOn returns a channel name whose keys the master m holds.
func channelOn(t *testing.T, b *Broker, c *redistest.Cluster, m int) string {
	t.Helper()
	for i := range 1000 {
		ch := fmt.Sprintf("on-%d", i)
		node, err := b.cluster.MasterForKey(context.Background(), b.keys(ch)[0])
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == c.Masters[m].Addr() {
			return ch
		}
	}
	t.Fatalf("no channel on master %d", m)
	return ""
}

// A master killed (SIGKILL) and started again with its data (append-only
// file, fsync always): meanwhile its channels refuse publishes and the
// other masters' channels keep flowing; after, its channels continue in
// the same epoch with no gap, and a client that resumes with since= gets
// what it missed from history.
func TestCluster_MasterKilled(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	pub, sub := runNode(t, c.URL(), pubsub.Config{}), runNode(t, c.URL(), pubsub.Config{})
	waitReady(t, pub, sub)
	b := newBroker(t, c.URL(), pubsub.BrokerOptions{})
	killed, alive := channelOn(t, b, c, 0), channelOn(t, b, c, 1)
	client := dialNode(t, sub, "?channel="+killed+"&channel="+alive)
	epochs := map[string]string{}
	for range 2 {
		e := readEvent(t, client)
		epochs[e.Channel] = e.Epoch
	}
	publish := func(ch string, want uint64) {
		t.Helper()
		p, err := pub.Publish(ch, []byte(`"m"`))
		if err != nil || p.Offset != want {
			t.Fatalf("publish %s: %+v %v, want offset %d", ch, p, err, want)
		}
		if e := readEvent(t, client); e.Type != "message" || e.Channel != ch || e.Offset != want {
			t.Fatalf("got %+v, want %s offset %d", e, ch, want)
		}
	}
	publish(killed, 1)
	publish(alive, 1)
	c.Masters[0].Stop()
	eventually(t, 10*time.Second, func() error {
		if _, err := pub.Publish(killed, []byte(`"lost"`)); !errors.Is(err, pubsub.ErrBrokerUnavailable) {
			return fmt.Errorf("publish to %s with its master down: %v", killed, err)
		}
		return nil
	})
	publish(alive, 2)
	c.Masters[0].Start()
	c.WaitOK()
	eventually(t, 20*time.Second, func() error {
		if !pub.Ready() || !sub.Ready() {
			return errors.New("nodes not ready")
		}
		return nil
	})
	publish(killed, 2)
	publish(killed, 3)
	publish(alive, 3)
	back := dialNode(t, pub, fmt.Sprintf("?channel=%s&since=1&epoch=%s", killed, epochs[killed]))
	if e := readEvent(t, back); e.Type != "subscribed" || e.Offset != 3 || e.Epoch != epochs[killed] {
		t.Fatalf("resumed: %+v", e)
	}
	for off := uint64(2); off <= 3; off++ {
		if e := readEvent(t, back); e.Type != "message" || e.Offset != off {
			t.Fatalf("resumed: got %+v, want offset %d", e, off)
		}
	}
}

// The channel cap is split over the slot groups: with -max-channels 32,
// each of the 16 groups takes 2 channels, a third in one group is refused,
// and a channel of another group still gets in.
func TestCluster_CapPerGroup(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	b := newBroker(t, c.URL(), pubsub.BrokerOptions{MaxChannels: 2 * clusterGroups})
	ctx := context.Background()
	var same []string // channels of group 0
	other := ""
	for i := 0; len(same) < 3 || other == ""; i++ {
		ch := fmt.Sprintf("cap-%d", i)
		if group(ch) == 0 {
			same = append(same, ch)
		} else if other == "" {
			other = ch
		}
	}
	for i, ch := range same {
		_, _, err := b.History(ctx, ch, 0, 0)
		if refused := errors.Is(err, pubsub.ErrTooManyChannels); refused != (i == 2) || (!refused && err != nil) {
			t.Fatalf("channel %d of group 0: %v", i+1, err)
		}
	}
	if _, _, err := b.History(ctx, other, 0, 0); err != nil {
		t.Fatalf("a channel of another group: %v", err)
	}
}

// A slot group's slot moved to another master (resharding, keys and all):
// its channels continue, offsets in order with no gap, publishes follow
// Redis's MOVED, and a node's sharded subscription follows the slot to
// its new master (Redis drops it on the old one: SUNSUBSCRIBE).
func TestCluster_SlotMoved(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	pub, sub := runNode(t, c.URL(), pubsub.Config{}), runNode(t, c.URL(), pubsub.Config{})
	waitReady(t, pub, sub)
	b := newBroker(t, c.URL(), pubsub.BrokerOptions{})
	ch := channelOn(t, b, c, 0)
	client := dialNode(t, sub, "?channel="+ch)
	if e := readEvent(t, client); e.Type != "subscribed" {
		t.Fatalf("got %+v", e)
	}
	publish := func(want uint64) {
		t.Helper()
		if p, err := pub.Publish(ch, []byte(`"m"`)); err != nil || p.Offset != want {
			t.Fatalf("publish: %+v %v, want offset %d", p, err, want)
		}
	}
	publish(1)
	prefix := b.space(ch).prefix
	tag := prefix[strings.IndexByte(prefix, '{')+1 : len(prefix)-1]
	c.MoveSlot(int(slot(tag)), 0, 1)
	publish(2)
	publish(3)
	for off := uint64(1); off <= 3; off++ {
		if e := readEvent(t, client); e.Type != "message" || e.Offset != off {
			t.Fatalf("got %+v, want offset %d", e, off)
		}
	}
	masters := masterClients(t, c)
	topic := b.topic(ch)
	eventually(t, 10*time.Second, func() error {
		old := masters[0].PubSubShardNumSub(context.Background(), topic).Val()[topic]
		moved := masters[1].PubSubShardNumSub(context.Background(), topic).Val()[topic]
		if old != 0 || moved != 1 {
			return fmt.Errorf("%s: %d subscribers on the old master, %d on the new", topic, old, moved)
		}
		return nil
	})
	if logs := sub.logs.String(); !strings.Contains(logs, "slot of "+prefix+" moved") {
		t.Fatalf("the node did not see its subscription dropped; its log:\n%s", logs)
	}
	publish(4)
	if e := readEvent(t, client); e.Type != "message" || e.Offset != 4 {
		t.Fatalf("got %+v, want offset 4", e)
	}
}
