package redis

import (
	"context"
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
local function histKey(c) return P .. '{' .. c .. '}:hist' end
local function forgetBytes(c)
  local b = tonumber(redis.call('HGET', BYTES, c) or '0')
  redis.call('DECRBY', TOTAL, b)
  redis.call('HDEL', BYTES, c)
  redis.call('ZREM', HOLDERS, c)
end
local function reap()
  for _, c in ipairs(redis.call('ZRANGEBYSCORE', CHANS, '-inf', NOW, 'LIMIT', 0, 100)) do
    forgetBytes(c)
    redis.call('DEL', histKey(c), P .. '{' .. c .. '}:meta')
    redis.call('ZREM', CHANS, c)
    redis.call('ZREM', UNREAD, c)
    redis.call('ZREM', IDLE, c)
  end
end
-- evictIdle forgets one idle channel without history to make room for a
-- new one; idle channels with history stop being candidates.
local function evictIdle()
  for _, c in ipairs(redis.call('ZRANGE', IDLE, 0, 99)) do
    redis.call('ZREM', IDLE, c)
    if redis.call('ZSCORE', HOLDERS, c) == false and redis.call('ZSCORE', CHANS, c) ~= false then
      redis.call('DEL', histKey(c), P .. '{' .. c .. '}:meta')
      redis.call('ZREM', CHANS, c)
      redis.call('ZREM', UNREAD, c)
      return true
    end
  end
  return false
end
-- trimOldest drops c's oldest history entry.
local function trimOldest(c, overhead)
  local h = histKey(c)
  local e = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)[1]
  if not e then forgetBytes(c) return end
  redis.call('XDEL', h, e[1])
  local cost = #e[2][4] + overhead
  redis.call('DECRBY', TOTAL, cost)
  if redis.call('HINCRBY', BYTES, c, -cost) <= 0 or redis.call('XLEN', h) == 0 then
    forgetBytes(c)
    return
  end
  local head = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)[1]
  redis.call('ZADD', HOLDERS, head[2][2], c)
end
-- newChannel starts C's epoch, within the channel cap.
local function newChannel(meta)
  if redis.call('ZSCORE', CHANS, C) == false and redis.call('ZCARD', CHANS) >= tonumber(ARGV[5]) and not evictIdle() then
    return redis.error_reply('fanout: too many channels (' .. ARGV[5] .. ')')
  end
  forgetBytes(C)
  redis.call('DEL', histKey(C))
  redis.call('HSET', meta, 'epoch', ARGV[6], 'offset', 0)
  return ARGV[6]
end
`

// publishScript: KEYS meta, hist; ARGV as in budgetLua, then data, history
// size, topic, max channels made by publishes, history max bytes, entry
// overhead, publish command (SPUBLISH in a cluster: sharded pub/sub).
var publishScript = goredis.NewScript(budgetLua + `
reap()
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  if redis.call('ZSCORE', CHANS, C) == false then
    if redis.call('ZCARD', UNREAD) >= tonumber(ARGV[10]) then
      return redis.error_reply('fanout: too many channels: ' .. ARGV[10] .. ' without subscribers')
    end
    redis.call('ZADD', UNREAD, NOW + TTL, C)
  end
  epoch = newChannel(KEYS[1])
  if type(epoch) == 'table' then return epoch end
end
redis.call('ZADD', CHANS, NOW + TTL, C)
redis.call('ZADD', UNREAD, 'XX', NOW + TTL, C)
local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('PEXPIRE', KEYS[1], TTL)
local size, overhead = tonumber(ARGV[8]), tonumber(ARGV[12])
if size > 0 then
  local cost, head = #ARGV[7] + overhead, NOW
  local drop = redis.call('XLEN', KEYS[2]) + 1 - size
  if drop > 0 then -- a full history, the steady state: the oldest go as this one comes, in one XADD
    local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', drop + 1)
    for i = 1, math.min(drop, #old) do cost = cost - (#old[i][2][4] + overhead) end
    if old[drop + 1] then head = tonumber(old[drop + 1][2][2]) end
    redis.call('XADD', KEYS[2], 'MAXLEN', size, off .. '-1', 't', NOW, 'd', ARGV[7])
    redis.call('ZADD', HOLDERS, head, C)
  else
    redis.call('XADD', KEYS[2], off .. '-1', 't', NOW, 'd', ARGV[7])
    redis.call('ZADD', HOLDERS, 'NX', NOW, C)
  end
  redis.call('PEXPIRE', KEYS[2], TTL)
  redis.call('HINCRBY', BYTES, C, cost)
  local maxBytes = tonumber(ARGV[11])
  if redis.call('INCRBY', TOTAL, cost) > maxBytes then -- over the budget (rare): the oldest of any channel go
    while tonumber(redis.call('GET', TOTAL) or '0') > maxBytes do
      local victim = redis.call('ZRANGE', HOLDERS, 0, 0)[1]
      if not victim then break end
      trimOldest(victim, overhead)
    end
  end
end
redis.call(ARGV[13], ARGV[9], '\0fo1 ' .. epoch .. ' ' .. off .. ' ' .. ARGV[7])
return {epoch, off}
`)

// redisEntryOverhead approximates what a history entry costs Redis beside
// its data: the stream entry's ID, its "t" field and listpack headers.
const redisEntryOverhead = 64

// budgetArgs are the first ARGV of every script (see budgetLua).
func (b *Broker) budgetArgs(channel string) []any {
	return []any{b.space(channel).prefix, channel, time.Now().UnixMilli(), b.ttl.Milliseconds(), b.maxChannels, pubsub.NewEpoch()}
}

// publishArgs are publishScript's ARGV for one message.
func (b *Broker) publishArgs(channel string, data []byte) []any {
	cmd := "PUBLISH"
	if b.cluster != nil {
		cmd = "SPUBLISH"
	}
	return append(b.budgetArgs(channel), data, b.size, b.topic(channel), pubsub.MaxUnreadChannels(b.maxChannels), b.maxBytes, redisEntryOverhead, cmd)
}

// historyScript: KEYS meta, hist; ARGV as in budgetLua, then after, limit,
// oldest ms kept.
var historyScript = goredis.NewScript(budgetLua + `
reap()
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = newChannel(KEYS[1])
  if type(epoch) == 'table' then return epoch end
end
redis.call('ZADD', CHANS, NOW + TTL, C)
redis.call('ZREM', UNREAD, C)
redis.call('ZREM', IDLE, C)
redis.call('PEXPIRE', KEYS[1], TTL)
redis.call('PEXPIRE', KEYS[2], TTL)
local top = redis.call('HGET', KEYS[1], 'offset')
local out = {epoch, tonumber(top)}
if tonumber(ARGV[8]) > 0 then
  local oldest = tonumber(ARGV[9])
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '(' .. ARGV[7] .. '-1', '+', 'COUNT', ARGV[8])) do
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
	args := append(b.budgetArgs(channel), after, limit, oldest)
	res, err := historyScript.Run(ctx, b.rdb, b.keys(channel), args...).Slice()
	if err != nil {
		return pubsub.Position{}, nil, scriptError(err)
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
