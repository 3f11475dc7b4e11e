package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	goredis "github.com/redis/go-redis/v9"
)

// Broker is a pubsub.Broker on Redis pub/sub. Each node holds one pattern
// subscription (PSUBSCRIBE <prefix>msg:*), never one per connection or per
// channel. A publish runs one Lua script that increments the channel's
// offset, appends to its history stream (MAXLEN history size) and
// PUBLISHes, atomically, so offsets are gap-free and in order on every
// node. Keys, with {channel} as the cluster hash tag:
//
//	<prefix>{<channel>}:meta   hash: epoch, offset (expires after the history TTL without use)
//	<prefix>{<channel>}:hist   stream of the last messages, IDs <offset>-1
//	<prefix>msg:<channel>      the pub/sub topic
//
// A plain "PUBLISH <prefix>msg:<channel> <JSON>" from any Redis client
// reaches every node's subscribers too, without an offset or history.
type Broker struct {
	rdb    *goredis.Client
	prefix string
	size   int
	ttl    time.Duration
	log    *slog.Logger
	ready  atomic.Bool
}

// internalMark starts the pub/sub payload of a message published through
// Fanout: "\x00fo1 <epoch> <offset> <data>". JSON never starts with NUL.
const internalMark = "\x00fo1 "

// New returns a broker for the Redis at url
// (redis://[user:password@]host:port/db). It does not connect yet: Start
// does, retrying with backoff while Redis is down.
func New(url string, o pubsub.BrokerOptions) (*Broker, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: url: %w", err)
	}
	// Workers call Publish and History: fail fast instead of waiting on a
	// Redis that is down.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	opt.MaxRetries = 1
	b := &Broker{
		rdb:    goredis.NewClient(opt),
		prefix: cmp.Or(o.Prefix, "fanout:"),
		size:   cmp.Or(o.HistorySize, pubsub.DefaultHistorySize),
		ttl:    cmp.Or(o.HistoryTTL, pubsub.DefaultHistoryTTL),
		log:    o.Logger,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Close closes the Redis connections.
func (b *Broker) Close() error { return b.rdb.Close() }

// HistoryLimits reports the history each channel keeps.
func (b *Broker) HistoryLimits() (size int, ttl time.Duration) { return b.size, b.ttl }

// Ready reports whether the pattern subscription is live.
func (b *Broker) Ready() bool { return b.ready.Load() }

func (b *Broker) keys(channel string) []string {
	return []string{b.prefix + "{" + channel + "}:meta", b.prefix + "{" + channel + "}:hist"}
}

func (b *Broker) topic(channel string) string { return b.prefix + "msg:" + channel }

// Start subscribes and delivers on a goroutine of its own until ctx is
// done, resubscribing with backoff after any error.
func (b *Broker) Start(ctx context.Context, deliver func(pubsub.Message), resync func()) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.run(ctx, deliver, resync)
	}()
	return stopped
}

func (b *Broker) run(ctx context.Context, deliver func(pubsub.Message), resync func()) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps := b.rdb.PSubscribe(ctx, b.topic("*"))
		unblock := context.AfterFunc(ctx, func() { ps.Close() }) // Receive does not watch ctx
		err := b.receive(ctx, ps, deliver, resync)
		unblock()
		ps.Close()
		if b.ready.Swap(false) {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("redis broker disconnected; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (b *Broker) receive(ctx context.Context, ps *goredis.PubSub, deliver func(pubsub.Message), resync func()) error {
	topicPrefix := b.topic("")
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			b.ready.Store(true)
			b.log.Info("redis broker subscribed", "pattern", m.Channel)
			resync() // anything published while we were away
		case *goredis.Message:
			channel, ok := strings.CutPrefix(m.Channel, topicPrefix)
			if !ok {
				continue
			}
			if msg, ok := parsePayload(channel, m.Payload); ok {
				deliver(msg)
			} else {
				b.log.Warn("redis broker: dropped a message that is neither Fanout's nor JSON", "channel", channel)
			}
		}
	}
}

// parsePayload reads a pub/sub payload: Fanout's own, or plain JSON
// published from outside (offset 0).
func parsePayload(channel, payload string) (pubsub.Message, bool) {
	rest, ok := strings.CutPrefix(payload, internalMark)
	if !ok {
		if pubsub.CheckChannelName(channel) != nil || !json.Valid([]byte(payload)) {
			return pubsub.Message{}, false
		}
		return pubsub.Message{Channel: channel, Data: []byte(payload)}, true
	}
	epoch, rest, ok1 := strings.Cut(rest, " ")
	off, data, ok2 := strings.Cut(rest, " ")
	offset, err := strconv.ParseUint(off, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return pubsub.Message{}, false
	}
	return pubsub.Message{Channel: channel, Position: pubsub.Position{Offset: offset, Epoch: epoch}, Data: []byte(data)}, true
}

// publishScript: KEYS meta, hist; ARGV data, history size, ttl ms, now ms,
// a new epoch (used when the channel has none), topic.
var publishScript = goredis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('DEL', KEYS[2])
end
local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], off .. '-1', 't', ARGV[4], 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], '\0fo1 ' .. epoch .. ' ' .. off .. ' ' .. ARGV[1])
return {epoch, off}
`)

// Publish appends data to channel's stream and publishes it.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (pubsub.Position, error) {
	now := time.Now()
	res, err := publishScript.Run(ctx, b.rdb, b.keys(channel),
		data, b.size, b.ttl.Milliseconds(), now.UnixMilli(), pubsub.NewEpoch(), b.topic(channel)).Slice()
	if err != nil {
		return pubsub.Position{}, err
	}
	return scriptPosition(res)
}

// historyScript: KEYS meta, hist; ARGV after, limit, oldest ms kept, ttl
// ms, a new epoch (used when the channel has none).
var historyScript = goredis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local top = redis.call('HGET', KEYS[1], 'offset')
local out = {epoch, tonumber(top)}
if tonumber(ARGV[2]) > 0 then
  local oldest = tonumber(ARGV[3])
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-1', '+', 'COUNT', ARGV[2])) do
    if tonumber(e[2][2]) >= oldest then
      table.insert(out, e[1])
      table.insert(out, e[2][4])
    end
  end
end
return out
`)

// History returns channel's position and the kept messages after after.
func (b *Broker) History(ctx context.Context, channel string, after uint64, limit int) (pubsub.Position, []pubsub.Message, error) {
	oldest := time.Now().Add(-b.ttl).UnixMilli()
	res, err := historyScript.Run(ctx, b.rdb, b.keys(channel),
		after, limit, oldest, b.ttl.Milliseconds(), pubsub.NewEpoch()).Slice()
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	top, err := scriptPosition(res)
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	var msgs []pubsub.Message
	for i := 2; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		data, _ := res[i+1].(string)
		off, err := strconv.ParseUint(strings.TrimSuffix(id, "-1"), 10, 64)
		if err != nil {
			return pubsub.Position{}, nil, fmt.Errorf("redis: history entry %q", id)
		}
		msgs = append(msgs, pubsub.Message{Channel: channel, Position: pubsub.Position{Offset: off, Epoch: top.Epoch}, Data: []byte(data)})
	}
	return top, msgs, nil
}

// scriptPosition reads the {epoch, offset} head of a script's reply.
func scriptPosition(res []any) (pubsub.Position, error) {
	if len(res) < 2 {
		return pubsub.Position{}, fmt.Errorf("redis: script replied %v", res)
	}
	epoch, _ := res[0].(string)
	off, ok := res[1].(int64)
	if epoch == "" || !ok || off < 0 {
		return pubsub.Position{}, fmt.Errorf("redis: script replied %v", res)
	}
	return pubsub.Position{Offset: uint64(off), Epoch: epoch}, nil
}
