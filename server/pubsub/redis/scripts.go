package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub"
	goredis "github.com/redis/go-redis/v9"
)

// budgetLua is shared by the scripts: the channel cap and the history
// byte budget over all channels, kept in global keys beside each
// channel's own (so they need one Redis; in a cluster, each slot group
// keeps its own under its hash tag, with its share of the caps):
//
//	<prefix>chans    sorted set: every channel, scored by when it expires (ms)
//	<prefix>unread   sorted set: the channels made by a publish and not read since
//	<prefix>holders  sorted set: the channels with history, scored by their oldest entry (ms)
//	<prefix>idle     sorted set: the channels released by a node (Release) and not read since
//	<prefix>bytes    hash: each holder's history bytes
//	<prefix>total    the history bytes of all channels
//
// A channel's keys expire by themselves; reap forgets the expired ones in
// the global keys first, so the counts never drift. ARGV[1..6] of every
// script: prefix, channel, now ms, ttl ms, max channels, new epoch.
const budgetLua = `
local P, C, NOW, TTL = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local CHANS, UNREAD, HOLDERS, BYTES, TOTAL, IDLE = P .. 'chans', P .. 'unread', P .. 'holders', P .. 'bytes', P .. 'total', P .. 'idle'
local function logKey(c) return P .. '{' .. c .. '}:log' end
local function forgetBytes(c)
  local b = tonumber(redis.call('HGET', BYTES, c) or '0')
  redis.call('DECRBY', TOTAL, b)
  redis.call('HDEL', BYTES, c)
  redis.call('ZREM', HOLDERS, c)
end
local function reap()
  for _, c in ipairs(redis.call('ZRANGEBYSCORE', CHANS, '-inf', NOW, 'LIMIT', 0, 100)) do
    forgetBytes(c)
    redis.call('DEL', logKey(c), P .. '{' .. c .. '}:meta')
    redis.call('ZREM', CHANS, c)
    redis.call('ZREM', UNREAD, c)
    redis.call('ZREM', IDLE, c)
  end
end
-- int writes an integer for a command: Lua's own number to string
-- conversion (printf's %.14g) is among the costliest steps of a publish.
local function int(n) return string.format('%d', n) end
-- A history entry is "<offset> <ms> <data>"; it costs its length plus
-- the overhead.
local function entryTime(e) return string.match(e, '^%d+ (%d+)') end
-- busy holds the channels a script is publishing to, each with its number
-- of messages: never evicted under it, so what it has read of them stays
-- true.
local busy = {}
-- evictIdle forgets one idle channel without history to make room for a
-- new one; idle channels with history stop being candidates.
local function evictIdle()
  for _, c in ipairs(redis.call('ZRANGE', IDLE, 0, 99)) do
    if not busy[c] then
      redis.call('ZREM', IDLE, c)
      if redis.call('ZSCORE', HOLDERS, c) == false and redis.call('ZSCORE', CHANS, c) ~= false then
        redis.call('DEL', logKey(c), P .. '{' .. c .. '}:meta')
        redis.call('ZREM', CHANS, c)
        redis.call('ZREM', UNREAD, c)
        return true
      end
    end
  end
  return false
end
-- trimOldest drops c's oldest history entry.
local function trimOldest(c, overhead)
  local h = logKey(c)
  local e = redis.call('LPOP', h)
  if not e then forgetBytes(c) return end
  local cost = #e + overhead
  redis.call('DECRBY', TOTAL, cost)
  local head = redis.call('LINDEX', h, 0)
  if redis.call('HINCRBY', BYTES, c, -cost) <= 0 or not head then
    forgetBytes(c)
    return
  end
  redis.call('ZADD', HOLDERS, entryTime(head), c)
end
-- newChannel starts channel c's epoch (meta its key) within the channel
-- cap: the epoch, or nil and why not.
local function newChannel(c, meta)
  if redis.call('ZSCORE', CHANS, c) == false and redis.call('ZCARD', CHANS) >= tonumber(ARGV[5]) and not evictIdle() then
    return nil, 'fanout: too many channels (' .. ARGV[5] .. ')'
  end
  forgetBytes(c)
  redis.call('DEL', logKey(c))
  redis.call('HSET', meta, 'epoch', ARGV[6], 'offset', 0)
  return ARGV[6]
end
`

// publishScript publishes a batch of messages in order, in one call.
// Redis's fixed cost of a call and reap() are paid once per batch, and a
// channel's bookkeeping once per channel and batch: one HINCRBY for its
// offsets, one trim of its history (an LPOP of what the batch pushed past
// the history size, whose lengths are the bytes freed), one update of its
// bytes. A channel's history is a list, oldest first, so an RPUSH and an
// LPOP cost the same however long it is. Its expiry (the keys'
// PEXPIRE, its place in the channel sets) and its holder score (the time
// of its oldest entry) are refreshed when the last refresh is older than
// TTL/100, noted in its meta as "seen", so a busy channel costs two
// commands a message (RPUSH, PUBLISH) and the byte budget's victims are
// the oldest to within TTL/100.
// KEYS: meta and log of each message in turn (all in one key space).
// ARGV as in budgetLua (the channel unused; the new epoch serves every
// channel the batch makes), then history size, max channels made by
// publishes, history max bytes, entry overhead, publish command (SPUBLISH
// in a cluster), topic prefix, then channel and data of each message.
// Replies epoch and offset of each message in turn, or an empty epoch and
// why it was refused.
var publishScript = goredis.NewScript(budgetLua + `
reap()
local size, maxUnread, maxBytes, overhead, PUB, TOPIC = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11], ARGV[12]
local every = math.max(1, math.floor(TTL / 100))
local n = #KEYS / 2
for i = 1, n do
  local c = ARGV[11 + 2 * i]
  busy[c] = (busy[c] or 0) + 1
end
local out, st, order = {}, {}, {}
for i = 1, n do
  local c, data, meta, log = ARGV[11 + 2 * i], ARGV[12 + 2 * i], KEYS[2 * i - 1], KEYS[2 * i]
  local s = st[c]
  if not s then -- the channel's first message in this batch
    local h = redis.call('HMGET', meta, 'epoch', 'seen')
    local epoch, seen, err = h[1], tonumber(h[2]) or 0, nil
    if not epoch then
      if redis.call('ZSCORE', CHANS, c) == false then
        if redis.call('ZCARD', UNREAD) >= maxUnread then
          err = 'fanout: too many channels: ' .. ARGV[8] .. ' without subscribers'
        else
          redis.call('ZADD', UNREAD, NOW + TTL, c)
        end
      end
      if not err then epoch, err = newChannel(c, meta) end
      seen = 0
    end
    if err then
      s = {err = err}
    else
      local left = busy[c]
      s = {epoch = epoch, off = redis.call('HINCRBY', meta, 'offset', left) - left, log = log, cost = 0, len = 0}
      if NOW - seen >= every then
        s.refresh = true
        redis.call('HSET', meta, 'seen', NOW)
        redis.call('PEXPIRE', meta, TTL)
        redis.call('ZADD', CHANS, NOW + TTL, c)
        redis.call('ZADD', UNREAD, 'XX', NOW + TTL, c)
      end
    end
    st[c] = s
    order[#order + 1] = c
  end
  if s.err then
    out[2 * i - 1], out[2 * i] = '', s.err
  else
    s.off = s.off + 1
    local off = int(s.off)
    if size > 0 then
      local e = off .. ' ' .. ARGV[3] .. ' ' .. data -- the time as given: a string already
      s.len = redis.call('RPUSH', log, e)
      if s.len == 1 then s.fresh = true end -- the history was empty
      s.cost = s.cost + #e + overhead
    end
    redis.call(PUB, TOPIC .. c, '\0fo1 ' .. s.epoch .. ' ' .. off .. ' ' .. data)
    out[2 * i - 1], out[2 * i] = s.epoch, s.off
  end
end
local total = 0
for _, c in ipairs(order) do
  local s = st[c]
  if not s.err and size > 0 then
    local trimmed = s.len > size
    if trimmed then
      for _, e in ipairs(redis.call('LPOP', s.log, int(s.len - size))) do s.cost = s.cost - #e - overhead end
    end
    if s.refresh or s.fresh then -- RPUSH keeps an existing key's expiry
      redis.call('PEXPIRE', s.log, TTL)
    end
    if s.fresh then
      redis.call('ZADD', HOLDERS, 'NX', NOW, c)
    elseif trimmed and s.refresh then -- the budget's victims go by this score: TTL/100 is close enough
      redis.call('ZADD', HOLDERS, entryTime(redis.call('LINDEX', s.log, 0)), c)
    end
    if s.cost ~= 0 then
      redis.call('HINCRBY', BYTES, c, s.cost)
      total = total + s.cost
    end
  end
end
if total ~= 0 and redis.call('INCRBY', TOTAL, total) > maxBytes then -- over the budget (rare): the oldest of any channel go
  while tonumber(redis.call('GET', TOTAL) or '0') > maxBytes do
    local victim = redis.call('ZRANGE', HOLDERS, 0, 0)[1]
    if not victim then break end
    trimOldest(victim, overhead)
  end
end
return out
`)

// redisEntryOverhead approximates what a history entry costs Redis beside
// its own bytes: list and listpack headers.
const redisEntryOverhead = 64

// budgetArgs are the first ARGV of every script (see budgetLua).
func (b *Broker) budgetArgs(channel string) []any {
	return []any{b.space(channel).prefix, channel, time.Now().UnixMilli(), b.ttl.Milliseconds(), b.maxChannels, pubsub.NewEpoch()}
}

// publishCall is publishScript's KEYS and ARGV for msgs, all in one key
// space.
func (b *Broker) publishCall(msgs []pubsub.Message) (keys []string, args []any) {
	cmd := "PUBLISH"
	if b.cluster != nil {
		cmd = "SPUBLISH"
	}
	keys = make([]string, 0, 2*len(msgs))
	args = append(b.budgetArgs(msgs[0].Channel), b.size, pubsub.MaxUnreadChannels(b.maxChannels), b.maxBytes, redisEntryOverhead, cmd,
		b.space(msgs[0].Channel).topicPrefix())
	for _, m := range msgs {
		keys = append(keys, b.keys(m.Channel)...)
		args = append(args, m.Channel, m.Data)
	}
	return keys, args
}

// publishReplies reads publishScript's reply for n messages.
func publishReplies(res []any, n int) ([]pubsub.Position, []error, error) {
	if len(res) != 2*n {
		return nil, nil, fmt.Errorf("redis: publish script replied %d values for %d messages", len(res), n)
	}
	pos, errs := make([]pubsub.Position, n), make([]error, n)
	for i := range n {
		if epoch, _ := res[2*i].(string); epoch == "" {
			why, _ := res[2*i+1].(string)
			errs[i] = scriptError(errors.New(why))
			continue
		}
		pos[i], errs[i] = scriptPosition(res[2*i : 2*i+2])
	}
	return pos, errs, nil
}

// historyScript: KEYS meta, log; ARGV as in budgetLua, then after, limit.
// Replies epoch, offset, then (limit > 0) up to limit entries from the
// first after after. Their offsets are consecutive, so the one to start
// from is found by its index; should some be missing (written elsewhere
// by another version), the entries read start earlier, never later.
var historyScript = goredis.NewScript(budgetLua + `
reap()
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local err
  epoch, err = newChannel(C, KEYS[1])
  if not epoch then return redis.error_reply(err) end
end
redis.call('ZADD', CHANS, NOW + TTL, C)
redis.call('ZREM', UNREAD, C)
redis.call('ZREM', IDLE, C)
redis.call('PEXPIRE', KEYS[1], TTL)
redis.call('PEXPIRE', KEYS[2], TTL)
local top = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local out = {epoch, top}
local limit = tonumber(ARGV[8])
if limit > 0 then
  local head = top - redis.call('LLEN', KEYS[2]) + 1 -- the oldest entry's offset
  local from = math.max(0, tonumber(ARGV[7]) + 1 - head)
  for _, e in ipairs(redis.call('LRANGE', KEYS[2], int(from), int(from + limit - 1))) do
    out[#out + 1] = e
  end
end
return out
`)

// History returns channel's position and the kept messages after after.
func (b *Broker) History(ctx context.Context, channel string, after uint64, limit int) (pubsub.Position, []pubsub.Message, error) {
	oldest := time.Now().Add(-b.ttl).UnixMilli()
	args := append(b.budgetArgs(channel), after, limit)
	res, err := historyScript.Run(ctx, b.rdb, b.keys(channel), args...).Slice()
	if err != nil {
		return pubsub.Position{}, nil, scriptError(err)
	}
	top, err := scriptPosition(res)
	if err != nil {
		return pubsub.Position{}, nil, err
	}
	var msgs []pubsub.Message
	for _, r := range res[2:] {
		e, _ := r.(string)
		off, rest, ok1 := strings.Cut(e, " ")
		ms, data, ok2 := strings.Cut(rest, " ")
		offset, err1 := strconv.ParseUint(off, 10, 64)
		t, err2 := strconv.ParseInt(ms, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			return pubsub.Position{}, nil, fmt.Errorf("redis: history entry %.40q", e)
		}
		if offset <= after || t < oldest { // read from too early, or older than the TTL (kept only until pushed out)
			continue
		}
		msgs = append(msgs, pubsub.Message{Channel: channel, Position: pubsub.Position{Offset: offset, Epoch: top.Epoch}, Data: []byte(data)})
	}
	return top, msgs, nil
}

// releaseScript marks a channel idle (see budgetLua): ARGV as in budgetLua.
// A channel made by a publish and not read since counts as unread already.
var releaseScript = goredis.NewScript(budgetLua + `
if redis.call('ZSCORE', CHANS, C) ~= false and redis.call('ZSCORE', UNREAD, C) == false then
  redis.call('ZADD', IDLE, NOW, C)
end
return 1
`)

// Release marks channel as one without subscribers on this node: if no
// node reads it again, a new channel may take its place (pubsub.Broker).
func (b *Broker) Release(ctx context.Context, channel string) error {
	return releaseScript.Run(ctx, b.rdb, b.keys(channel), b.budgetArgs(channel)...).Err()
}

// scriptError is a script's error as the Broker contract wants it: a
// channel cap as pubsub.ErrTooManyChannels.
func scriptError(err error) error {
	if err == nil {
		return nil
	}
	if rest, ok := strings.CutPrefix(err.Error(), "fanout: too many channels"); ok {
		return fmt.Errorf("%w%s", pubsub.ErrTooManyChannels, rest)
	}
	return err
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
