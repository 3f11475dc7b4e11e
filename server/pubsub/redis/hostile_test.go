package redis

// Hostile clients (issue #10, findings 2, 3 and 14) against a real
// redis-server: the channel cap and the history byte budget hold for every
// node in Redis itself, and an outage is told as one a client should
// retry.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
)

// refusedWith dials url and checks it is refused with 503, Retry-After and
// a body that contains reason.
func refusedWith(t *testing.T, url, reason string) error {
	t.Helper()
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil {
		return fmt.Errorf("upgrade %s: %v, want a refusal", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), reason) {
		return fmt.Errorf("upgrade %s: %d %q (Retry-After %q), want 503 %q with Retry-After", url, resp.StatusCode, body, resp.Header.Get("Retry-After"), reason)
	}
	return nil
}

// apiPublish posts one message to an APIHandler at base.
func apiPublish(t *testing.T, base, channel string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":1}`, channel)))
	req.Header.Set("X-API-Key", "key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, string(body)
}

// Finding 14: while Redis is down, an upgrade with ?channel= and an API
// publish are both answered 503 with Retry-After, a refusal clients retry;
// connected clients stay connected and, once Redis is back without its
// data, learn the new epoch and that offsets restart from the gap notice.
func TestHostile_RedisOutage(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	n := runNode(t, r.URL(), pubsub.Config{})
	api := httptest.NewServer(n.APIHandler("key"))
	t.Cleanup(api.Close)
	waitReady(t, n)
	sub := dialNode(t, n, "?channel=live")
	readEvent(t, sub)
	p, err := n.Publish("live", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	last := readEvent(t, sub).Offset
	r.Stop()
	url := "ws://" + n.Addr + "/ws?channel=live"
	eventually(t, 5*time.Second, func() error { return refusedWith(t, url, "broker unavailable") })
	if status, h, body := apiPublish(t, api.URL, "live"); status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("API publish with Redis down: %d %s, want 503 with Retry-After", status, body)
	}
	r.Start()
	waitReady(t, n)
	var after pubsub.Publication
	eventually(t, 5*time.Second, func() (err error) { after, err = n.Publish("live", []byte(`"after"`)); return err })
	gap := readEvent(t, sub)
	if gap.Type != "gap" || gap.Epoch != after.Epoch || gap.Epoch == p.Epoch || gap.First == nil {
		t.Fatalf("after the restart: %+v, want a gap with the new epoch %s and first", gap, after.Epoch)
	}
	if after.Offset > last {
		t.Fatalf("offset %d after the restart, want offsets restarted (at most %d)", after.Offset, last)
	}
	last = *gap.First - 1 // README's rule for a gap with an epoch; without it "after" is dropped
	if e := readEvent(t, sub); e.Offset <= last || string(e.Data) != `"after"` {
		t.Fatalf("after the reset: %+v, want a message above offset %d", e, last)
	}
}

// Finding 2: the channel cap holds in Redis: publishes alone make at most
// half of MaxChannels, subscribers get the rest, the next is refused with
// ErrTooManyChannels (503 with Retry-After at upgrade, never "broker
// unavailable"), and channels that expire give their slots back.
func TestHostile_RedisChannelCap(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	const maxChannels = 10
	n := runNode(t, r.URL(), pubsub.Config{MaxChannels: maxChannels, HistoryTTL: 2 * time.Second})
	waitReady(t, n)
	made := 0
	for i := range 3 * maxChannels {
		_, err := n.Publish(fmt.Sprintf("flood-%d", i), []byte("1"))
		switch {
		case err == nil:
			made++
		case !errors.Is(err, pubsub.ErrTooManyChannels) || errors.Is(err, pubsub.ErrBrokerUnavailable):
			t.Fatalf("publish %d: %v, want ErrTooManyChannels alone", i, err)
		}
	}
	if made != pubsub.MaxUnreadChannels(maxChannels) {
		t.Fatalf("publishes made %d channels, want %d", made, pubsub.MaxUnreadChannels(maxChannels))
	}
	for i := range maxChannels - made {
		if e := readEvent(t, dialNode(t, n, fmt.Sprintf("?channel=sub-%d", i))); e.Type != "subscribed" {
			t.Fatalf("subscriber %d: %+v", i, e)
		}
	}
	base := "ws://" + n.Addr + "/ws?channel="
	if err := refusedWith(t, base+"one-too-many", "too many channels"); err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	if got := rdb.ZCard(context.Background(), "fanout:chans").Val(); got != maxChannels {
		t.Fatalf("Redis counts %d channels, want %d", got, maxChannels)
	}
	// The flood's channels expire after the TTL; the subscribed ones are
	// kept alive by their node.
	eventually(t, 10*time.Second, func() error {
		c, resp, err := websocket.DefaultDialer.Dial(base+"after-expiry", nil)
		if err != nil {
			return fmt.Errorf("after the flood expired: %v %v", err, resp)
		}
		c.Close()
		return nil
	})
}

// Finding 3: an anonymous client publishing 24 MiB into 30 channels leaves
// at most HistoryMaxBytes of history in Redis, counted exactly (the sum of
// the streams' entries) and evicted oldest first across channels; Redis's
// used_memory grows by no more than the budget and some slack.
func TestHostile_RedisHistoryBudget(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	const budget = 1 << 20
	n := runNode(t, r.URL(), pubsub.Config{HistoryMaxBytes: budget})
	waitReady(t, n)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	usedMemory := func() int64 {
		info := rdb.InfoMap(ctx, "memory").Item("Memory", "used_memory")
		v, err := strconv.ParseInt(info, 10, 64)
		if err != nil {
			t.Fatalf("used_memory %q: %v", info, err)
		}
		return v
	}
	before := usedMemory()
	attacker := dialNode(t, n, "")
	_ = attacker.SetReadDeadline(time.Now().Add(time.Minute)) // -race is slow
	const channels, perChannel, size = 30, 100, 8 << 10
	payload := `"` + strings.Repeat("x", size-2) + `"`
	peak := int64(0)
	for i := range channels * perChannel {
		sendJSON(t, attacker, fmt.Sprintf(`{"op":"publish","channel":"hoard-%d","data":%s}`, i/perChannel, payload))
		if e := readEvent(t, attacker); e.Type != "published" {
			t.Fatalf("publish %d: %+v", i, e)
		}
		if i%500 == 499 {
			peak = max(peak, usedMemory()-before)
		}
	}
	total, _ := rdb.Get(ctx, "fanout:total").Int64()
	counted := int64(0)
	for i := range channels {
		for _, e := range rdb.LRange(ctx, fmt.Sprintf("fanout:{hoard-%d}:log", i), 0, -1).Val() {
			counted += int64(len(e) + redisEntryOverhead)
		}
	}
	if total > budget || total != counted {
		t.Fatalf("Redis counts %d history bytes, the histories hold %d, want equal and at most %d", total, counted, budget)
	}
	if first, newest := rdb.LLen(ctx, "fanout:{hoard-0}:log").Val(), rdb.LLen(ctx, fmt.Sprintf("fanout:{hoard-%d}:log", channels-1)).Val(); first != 0 || newest == 0 {
		t.Fatalf("the oldest channel keeps %d entries and the newest %d, want 0 and some", first, newest)
	}
	const slack = 8 << 20 // Redis's own buffers
	after := usedMemory() - before
	t.Logf("24 MiB published: %d history bytes, used_memory growth peak %d, after %d", total, peak, after)
	if peak > budget+slack || after > budget+slack {
		t.Fatalf("Redis grew by %d during and %d after, want at most %d", peak, after, budget+slack)
	}
}
