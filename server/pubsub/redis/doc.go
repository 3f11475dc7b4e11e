// Package redis is a pubsub.Broker on Redis or a Redis Cluster, in a
// package of its own so that only programs that use it link go-redis.
//
// Each node holds one pub/sub connection, subscribed to exactly the
// channels with subscribers on that node (interest routing, route.go): a
// channel's first subscriber on a node adds it to the next SUBSCRIBE, which
// carries every route made meanwhile (at most one every 50 ms), and the
// sweep after its last one leaves adds it to an UNSUBSCRIBE. A publish runs
// one Lua script that takes the channel's next offset, appends the message
// to the channel's history list and PUBLISHes it, atomically, so every
// node sees the same gap-free order; concurrent publishes from one node go
// as one pipeline of those scripts per round trip (publish.go). History
// reads are one script too. After a reconnection the node is told to
// resync, and catches up from history.
//
// On a Redis Cluster (cluster.go) the same holds per slot group: channels
// fall into 16 groups, each a key space under a hash tag of its own, with
// one sharded pub/sub connection (SSUBSCRIBE) per group to its master, and
// the script SPUBLISHes; go-redis sends each master its part of a
// pipeline.
package redis
