// Package pubsub is Fanout's channel service, built on the engine's
// exported API (package server): named channels whose messages carry an
// offset, bounded history to recover what a reconnecting client missed,
// the JSON control protocol, and the HTTP publish API. A Broker numbers
// and keeps every channel's messages and joins several processes: the
// in-process MemoryBroker by default, or the Redis broker of package
// pubsub/redis.
//
//	Node.Publish / control {"op":"publish"} / POST /api/publish
//	           │
//	           ▼
//	Broker.Publish: next offset, kept in the channel's history
//	           │ delivered to every node (Broker.Start's deliver)
//	           ▼
//	Node.deliver: a hole in the offsets is filled from History first
//	           │ frame.Prepared built once per node
//	           ▼
//	the channel's server.Hub: one write per member, as any broadcast
//
// A subscribe (Node.Subscribe, SubscribeQuery at connect, or a control
// message) reads the channel's position and the history the client missed
// under the channel's lock, queues its reply and those messages on the
// Conn (Conn.SendPrepared), then joins the hub (Hub.Join), so no message
// can fall between them. The engine knows nothing of channels: a Node uses
// only Server.NewHub, Hub, Conn and the hooks the application wires to it
// (OnConnect → SubscribeQuery, OnMessage → HandleControl).
package pubsub
