// Package pubsub is Fanout's channel service, built on the engine's
// exported API (package server): named channels whose messages carry an
// offset, bounded history to recover what a reconnecting client missed,
// the JSON control protocol (spec/channels.md), and the HTTP publish API.
// A Broker numbers and keeps every channel's messages and joins several
// processes: the in-process MemoryBroker by default, the Redis broker of
// package pubsub/redis, or the RabbitMQ stream broker of package
// pubsub/rabbitmq; each passes the conformance suite of pubsub/pubsubtest.
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
// only Server.NewHub, Hub, Conn (its token claims included: channels are
// authorized here, Node.Allowed) and the hooks the application wires to
// it (OnConnect → SubscribeQuery, OnMessage → HandleControl, OnClose →
// HandleClose). So a Node is
// made first (New), the Server's hooks call its methods, and Start runs it
// on the Server.
//
// Files: broker.go (the Broker interface and its types), options.go
// (BrokerOptions), memory.go and history.go (MemoryBroker), node.go (Config,
// Node's life), registry.go (the channels this node carries), channels.go
// (publish and subscribe), delivery.go (from the broker to hubs),
// recovery.go (replay and gap notices), bus.go (notes between nodes),
// presence.go and presence_bus.go (members of presence channels),
// webhook.go (lifecycle webhooks, on the presence machinery), proxy.go
// (backend hooks),
// wire.go (what is sent), control.go
// and query.go (the control protocol, subscriptions at connect), api.go
// (HTTP), auth.go (channel permissions, channel tokens), users.go
// (connections by user: disconnect, unsubscribe and the per-user cap
// across nodes), limits.go (per-connection rates).
//
// Lock order: registry.mu, then a channel's mu, then presence.mu (a leaf
// but for hub broadcasts and bus sends); a channel's mu is held
// across broker calls (History) and hub broadcasts, never while taking
// registry.mu.
package pubsub
