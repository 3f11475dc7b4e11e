package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// The HTTP API's batch form is one Redis round trip, whatever its size,
// with each message's own offset, in order.
func TestRedis_APIBatchOneRoundTrip(t *testing.T) {
	t.Parallel()
	apiBatchOneRoundTrip(t, redistest.Start(t).URL())
}

// On a cluster, one pipeline: go-redis sends each master its part at once.
func TestCluster_APIBatchOneRoundTrip(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	b := newBroker(t, c.URL(), pubsub.BrokerOptions{})
	masters := map[string]bool{}
	for i := range 3 {
		m, err := b.cluster.MasterForKey(context.Background(), b.keys(fmt.Sprintf("batch-%d", i))[0])
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the batch's channels are all on %v: the test would not cross masters", masters)
	}
	apiBatchOneRoundTrip(t, c.URL())
}

func apiBatchOneRoundTrip(t *testing.T, url string) {
	n := runNode(t, url, pubsub.Config{})
	waitReady(t, n)
	api := httptest.NewServer(n.APIHandler("k"))
	defer api.Close()
	const size = 50
	var body strings.Builder
	body.WriteString("[")
	for i := range size {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"channel":"batch-%d","data":%d}`, i%3, i)
	}
	body.WriteString("]")
	if _, err := n.Publish("warm-up", []byte("0")); err != nil { // Redis loads the script
		t.Fatal(err)
	}
	before := n.Stats()
	req, _ := http.NewRequest(http.MethodPost, api.URL+"/api/publish", strings.NewReader(body.String()))
	req.Header.Set("Authorization", "Bearer k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Results []pubsub.Publication }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || len(out.Results) != size {
		t.Fatalf("%d %v %+v", res.StatusCode, err, out)
	}
	for i, p := range out.Results {
		if want := uint64(i/3 + 1); p.Channel != fmt.Sprintf("batch-%d", i%3) || p.Offset != want || p.Epoch == "" {
			t.Fatalf("result %d: %+v, want offset %d", i, p, want)
		}
	}
	after := n.Stats()
	if trips, msgs := after.PublishRoundTrips-before.PublishRoundTrips, after.PublishedMessages-before.PublishedMessages; trips != 1 || msgs != size {
		t.Fatalf("%d round trips carried %d messages, want 1 and %d", trips, msgs, size)
	}
}

// Concurrent publishers on one node share round trips, and each still
// gets its own offsets, increasing in the order it published.
func TestRedis_ConcurrentPublishesSharePipelines(t *testing.T) {
	t.Parallel()
	concurrentPublishesSharePipelines(t, redistest.Start(t).URL())
}

func TestCluster_ConcurrentPublishesSharePipelines(t *testing.T) {
	t.Parallel()
	concurrentPublishesSharePipelines(t, redistest.StartCluster(t, 3).URL())
}

func concurrentPublishesSharePipelines(t *testing.T, url string) {
	n := runNode(t, url, pubsub.Config{})
	waitReady(t, n)
	if _, err := n.Publish("warm-up", []byte("0")); err != nil { // Redis loads the script
		t.Fatal(err)
	}
	before := n.Stats()
	const publishers, each = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	offsets := make([][]uint64, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pub, err := n.Publish("shared", fmt.Appendf(nil, `[%d,%d]`, p, i))
				if err != nil {
					errs <- err
					return
				}
				offsets[p] = append(offsets[p], pub.Offset)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool)
	for p, offs := range offsets {
		for i, off := range offs {
			if seen[off] || i > 0 && off <= offs[i-1] {
				t.Fatalf("publisher %d: offsets %v", p, offs)
			}
			seen[off] = true
		}
	}
	if len(seen) != publishers*each {
		t.Fatalf("%d distinct offsets, want %d", len(seen), publishers*each)
	}
	st := n.Stats()
	msgs, trips := st.PublishedMessages-before.PublishedMessages, st.PublishRoundTrips-before.PublishRoundTrips
	if msgs != publishers*each || trips >= msgs {
		t.Fatalf("%d messages in %d round trips: none shared", msgs, trips)
	}
	t.Logf("%d messages in %d round trips", msgs, trips)
}

// A full history drops its oldest entries as new ones come (in one
// script call per batch, trimmed once per channel): the byte counts stay
// exact and each channel's oldest-entry score within TTL/100, whatever the
// sizes, one publish at a time and in batches that push out their own
// first messages, and after a node with another history size.
func TestRedis_FullHistoryAccounting(t *testing.T) {
	t.Parallel()
	const size, ttl = 5, time.Minute
	msg := func(i int) pubsub.Message {
		return pubsub.Message{Channel: fmt.Sprintf("full-%d", i%3), Data: fmt.Appendf(nil, `"%s"`, strings.Repeat("x", (i*37)%200))}
	}
	t.Run("one at a time", func(t *testing.T) {
		t.Parallel()
		r := redistest.Start(t)
		n := runNode(t, r.URL(), pubsub.Config{HistorySize: size, HistoryTTL: ttl})
		waitReady(t, n)
		for i := range 60 {
			if _, err := n.Publish(msg(i).Channel, msg(i).Data); err != nil {
				t.Fatal(err)
			}
		}
		checkHistoryAccounting(t, r, size, ttl, 20)
	})
	t.Run("in batches", func(t *testing.T) {
		t.Parallel()
		r := redistest.Start(t)
		b := newBroker(t, r.URL(), pubsub.BrokerOptions{HistorySize: size, HistoryTTL: ttl})
		var batch []pubsub.Message
		for i := range 60 {
			batch = append(batch, msg(i))
			if i == 20 { // one channel's twelve in one batch: more than its history holds
				for j := range 12 {
					batch = append(batch, pubsub.Message{Channel: "full-0", Data: fmt.Appendf(nil, "%d", j*j*j)})
				}
			}
			if len(batch) >= 13 || i == 59 {
				_, errs := b.PublishBatch(context.Background(), batch)
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				batch = batch[:0]
			}
		}
		checkHistoryAccounting(t, r, size, ttl, 32, 20)
	})
	t.Run("after a node with another history size", func(t *testing.T) {
		t.Parallel()
		r := redistest.Start(t)
		for i, hs := range []int{size + 3, size} {
			b := newBroker(t, r.URL(), pubsub.BrokerOptions{HistorySize: hs, HistoryTTL: ttl})
			for j := range 30 {
				m := msg(30*i + j)
				if _, err := b.Publish(context.Background(), m.Channel, m.Data); err != nil {
					t.Fatal(err)
				}
			}
		}
		checkHistoryAccounting(t, r, size, ttl, 20)
	})
}

// checkHistoryAccounting checks the history of channels full-0, full-1,
// full-2 holding size entries each, up to offsets last (full-0's first):
// what History reads, and the bytes and holder scores counted for it.
func checkHistoryAccounting(t *testing.T, r *redistest.Server, size int, ttl time.Duration, last ...uint64) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	b := newBroker(t, r.URL(), pubsub.BrokerOptions{HistorySize: size, HistoryTTL: ttl})
	ctx := context.Background()
	var all int64
	for c := range 3 {
		name := fmt.Sprintf("full-%d", c)
		entries := rdb.LRange(ctx, "fanout:{"+name+"}:log", 0, -1).Val()
		_, kept, err := b.History(ctx, name, 0, 100)
		if err != nil || len(entries) != size || len(kept) != size {
			t.Fatalf("%s keeps %d entries and History reads %d (%v), want %d", name, len(entries), len(kept), err, size)
		}
		want := last[len(last)-1]
		if c == 0 {
			want = last[0]
		}
		var bytes int64
		for i, e := range entries {
			off := want - uint64(size-1-i)
			if m := kept[i]; m.Offset != off || !strings.HasPrefix(e, fmt.Sprintf("%d ", off)) || !strings.HasSuffix(e, " "+string(m.Data)) {
				t.Fatalf("%s entry %d is %q, History reads offset %d %s, want offset %d", name, i, e, m.Offset, m.Data, off)
			}
			bytes += int64(len(e) + redisEntryOverhead)
		}
		all += bytes
		if got, _ := rdb.HGet(ctx, "fanout:bytes", name).Int64(); got != bytes {
			t.Errorf("%s counted %d bytes, holds %d", name, got, bytes)
		}
		oldest, _ := strconv.ParseFloat(strings.Fields(entries[0])[1], 64)
		if score := rdb.ZScore(ctx, "fanout:holders", name).Val(); score > oldest || score < oldest-float64((ttl/100).Milliseconds()) {
			t.Errorf("%s scored %v in holders, its oldest entry is from %v", name, score, oldest)
		}
	}
	if total, _ := rdb.Get(ctx, "fanout:total").Int64(); total != all {
		t.Fatalf("total %d, the histories hold %d", total, all)
	}
}

// A batch that meets the channel cap midway is refused message by message:
// the channels it may make get their offsets, in order, the rest
// pubsub.ErrTooManyChannels, and a refusal costs the others nothing.
func TestRedis_BatchMeetsTheChannelCap(t *testing.T) {
	t.Parallel()
	b := newBroker(t, redistest.Start(t).URL(), pubsub.BrokerOptions{MaxChannels: 6}) // 3 made by publishes
	var batch []pubsub.Message
	for i := range 10 {
		batch = append(batch, pubsub.Message{Channel: fmt.Sprintf("cap-%d", i%5), Data: []byte(strconv.Itoa(i))})
	}
	pos, errs := b.PublishBatch(context.Background(), batch)
	for i, m := range batch {
		c, _ := strconv.Atoi(strings.TrimPrefix(m.Channel, "cap-"))
		switch {
		case c < 3 && (errs[i] != nil || pos[i].Offset != uint64(i/5+1) || pos[i].Epoch == ""):
			t.Errorf("message %d to %s: %+v %v, want offset %d", i, m.Channel, pos[i], errs[i], i/5+1)
		case c >= 3 && !errors.Is(errs[i], pubsub.ErrTooManyChannels):
			t.Errorf("message %d to %s: %+v %v, want %v", i, m.Channel, pos[i], errs[i], pubsub.ErrTooManyChannels)
		}
	}
}

// History gives each entry the offset it was published with when some
// offsets are not in the list: while nodes of the version that kept
// history in streams publish beside this one (their messages take offsets
// but go to the stream), reads skip those offsets instead of shifting
// later entries onto them.
func TestRedis_HistoryWithMissingEntries(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	b := newBroker(t, r.URL(), pubsub.BrokerOptions{})
	ctx := context.Background()
	publish := func(data string) {
		t.Helper()
		if _, err := b.Publish(ctx, "mixed", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		publish(strconv.Itoa(i))
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer rdb.Close()
	rdb.HIncrBy(ctx, "fanout:{mixed}:meta", "offset", 2) // offsets 6 and 7, published elsewhere
	publish("8")
	for _, tc := range []struct {
		after uint64
		want  string
	}{{0, "1 2 3 4 5 8"}, {3, "4 5 8"}, {5, "8"}, {6, "8"}, {8, ""}} {
		top, msgs, err := b.History(ctx, "mixed", tc.after, 100)
		var got []string
		for _, m := range msgs {
			if string(m.Data) != strconv.FormatUint(m.Offset, 10) {
				t.Errorf("after %d: offset %d holds %s", tc.after, m.Offset, m.Data)
			}
			got = append(got, string(m.Data))
		}
		if err != nil || top.Offset != 8 || strings.Join(got, " ") != tc.want {
			t.Errorf("History after %d: top %d, %q, %v; want top 8, %q", tc.after, top.Offset, got, err, tc.want)
		}
	}
}
