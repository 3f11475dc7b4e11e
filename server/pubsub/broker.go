package pubsub

import (
	"context"
	"sync"
)

// Broker gives each channel message its offset, keeps channel history
// where every node can read it, and delivers every message to every node
// (a Router: to every node that routes its channel).
// MemoryBroker (the default) keeps all of it in one process; the Redis
// broker (package pubsub/redis) and the RabbitMQ stream broker (package
// pubsub/rabbitmq) join several processes. Every implementation passes
// pubsubtest.Run.
//
// What a Node relies on, for an implementation to provide:
//   - Offsets count from 1 per channel, without gaps, in one order that
//     every node sees; Start delivers each channel's messages in that order.
//   - An epoch names one run of a channel's offsets: when the broker loses
//     a channel's offsets or history (a restart without persistence, an
//     expiry after the history TTL without use), it starts a new epoch
//     (NewEpoch) and offsets restart at 1. Publish and History create the
//     channel, in a new epoch, if it does not exist.
//   - History keeps at most the configured number of messages per channel,
//     none older than the TTL; a History call counts as use of the channel.
//   - A Node calls Publish and History from worker goroutines that must not
//     block: fail fast (ErrBrokerUnavailable, or a wrapped error) while
//     disconnected rather than wait.
//   - After a reconnection, when messages may have been missed, call
//     resync: the Node then catches every channel up from History.
//
// A broker may also report the history it keeps (HistoryLimits() (int,
// time.Duration)); a Node then takes those limits instead of repeating them
// in its Config.
//
// Every implementation also keeps the bounds of BrokerOptions (channel
// caps, history byte budget) for all nodes together, and returns an error
// that wraps ErrTooManyChannels when a channel cap refuses a publish or a
// read: the node tells clients "too many channels" (503), not "broker
// unavailable". A History call is a read by a subscriber: it marks the
// channel as one with subscribers.
type Broker interface {
	// Start makes deliver receive every channel message published on any
	// node, in order per channel, until ctx is done, reconnecting by
	// itself; the returned channel closes once it has stopped. It returns
	// at once: a message published after that reaches deliver (once Ready,
	// for a broker that must connect). deliver may be called from several
	// goroutines, never concurrently for one channel. resync is called
	// after every reconnection, when messages may have been missed.
	Start(ctx context.Context, deliver func(Message), resync func()) (stopped <-chan struct{})

	// Publish appends data (one JSON value) to channel and returns its
	// position. The message reaches subscribers through Start, on every node.
	Publish(ctx context.Context, channel string, data []byte) (Position, error)

	// History returns channel's latest position and, up to limit, the kept
	// messages after offset after, oldest first, that are younger than the
	// history TTL.
	History(ctx context.Context, channel string, after uint64, limit int) (Position, []Message, error)

	// Release tells the broker that this node no longer has subscribers
	// of channel. A released channel that keeps no message no longer
	// counts against MaxChannels: the broker forgets it when a new channel
	// needs its place (a later use starts a new epoch), so subscribers who
	// come and go cannot lock others out until the history TTL. A read
	// (History) takes the release back. Releases are not counted per node:
	// when channels are full, one released here may be forgotten while
	// another node still carries it; its subscribers then get a gap notice
	// with the new epoch, and lose nothing (it kept no message).
	Release(ctx context.Context, channel string) error

	// Ready reports whether the broker is connected and delivering.
	Ready() bool
}

// Message is a channel message as a broker carries it (not a WebSocket
// message, frame.Message: subscribers receive it wrapped in a JSON
// envelope, built once per node). Offset 0 marks one
// injected from outside Fanout (a plain PUBLISH to the broker): it has no
// place in history and reaches subscribers without an offset.
type Message struct {
	Channel string
	Position
	Data []byte
}

// Position is where a subscriber left a channel: the last offset it
// received, in the channel history called Epoch.
type Position struct {
	Offset uint64
	Epoch  string // "" trusts Offset without checking the epoch
}

// Router is a Broker that routes by interest: it delivers to its node only
// the channels the node asked for, so a node hears nothing of channels it
// has no subscriber for (the Redis broker). A Node routes a channel when it
// gets its first subscriber here, before it reads the channel's History,
// and unroutes it once the channel has none (the sweep). A Router serves
// one Node.
type Router interface {
	// Route asks for channel's messages from now on. It returns at once:
	// the broker batches routes into few broker commands, off the caller's
	// goroutine. Once the messages flow, it calls live, once, from a
	// goroutine of its own that may block (the node reads History then):
	// any message published later reaches Start's deliver. While the
	// broker is disconnected, live waits for the reconnection.
	Route(channel string, live func())
	// Unroute gives up channel's messages. Calls for one channel alternate
	// with Route's.
	Unroute(channel string)
}

// BatchPublisher is a Broker that publishes many messages in one broker
// round trip: the HTTP API's batch form goes through it.
type BatchPublisher interface {
	// PublishBatch publishes msgs (Channel and Data) in order, as Publish
	// would one after another, and returns each one's position or error.
	PublishBatch(ctx context.Context, msgs []Message) ([]Position, []error)
}

// PublishByChannel is a BatchPublisher's PublishBatch for a broker whose
// publishes to one channel go one after another: it publishes msgs with
// publish, each channel's in order, the channels concurrently, so a batch
// over k channels takes about as long as the longest channel's share, not
// the sum.
func PublishByChannel(ctx context.Context, msgs []Message, publish func(ctx context.Context, channel string, data []byte) (Position, error)) ([]Position, []error) {
	pos, errs := make([]Position, len(msgs)), make([]error, len(msgs))
	byChannel := make(map[string][]int)
	for i, m := range msgs {
		byChannel[m.Channel] = append(byChannel[m.Channel], i)
	}
	var wg sync.WaitGroup
	for _, idx := range byChannel {
		wg.Go(func() {
			for _, i := range idx {
				pos[i], errs[i] = publish(ctx, msgs[i].Channel, msgs[i].Data)
			}
		})
	}
	wg.Wait()
	return pos, errs
}

// BrokerStats is what a broker counts for its node's metrics (Node.Stats),
// when it reports them (BrokerStats() BrokerStats).
type BrokerStats struct {
	Subscriptions     int    // broker subscriptions held for this node now (channels, patterns or streams)
	PublishRoundTrips uint64 // broker round trips that carried publishes
	PublishedMessages uint64 // the messages they carried
}
