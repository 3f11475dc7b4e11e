// Package redis is a pubsub.Broker on Redis, in a package of its own so
// that only programs that use it link go-redis.
//
// Each node holds one pattern subscription (PSUBSCRIBE <prefix>msg:*) and
// hands every message it receives to its pubsub.Node. A publish runs one
// Lua script that takes the channel's next offset, appends the message to
// the channel's history stream and PUBLISHes it, atomically, so every node
// sees the same gap-free order. History reads are one script too. After a
// reconnection the node is told to resync, and catches up from history.
package redis
