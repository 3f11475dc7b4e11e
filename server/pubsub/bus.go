package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The node bus: small JSON notes from one node to every node of the
// cluster (every Node on the same broker, this one included), for what
// the nodes must agree on besides channel messages: presence (presence.go)
// and cluster-wide operations on users. It rides the Broker like any
// channel, on busChannel, a name clients can never use (CheckChannelName
// refuses '$'), which every node routes from Start and whose deliveries go
// to the bus's handlers instead of subscribers. So it works on every
// broker with no code of its own there.
//
//	n.bus.handle("kind", func(from nodeID, payload json.RawMessage) { ... }) // before Start
//	n.bus.send("kind", v)                                                   // any time, never blocks
//
// Guarantees: one node's notes reach every node in the order it sent
// them, at most once. Notes are lost while the broker is down or
// reconnecting, when sendQueue is full, or before this node's route is
// live (a few ms after Start): a user of the bus must repair what a lost
// note breaks, as presence does with heartbeats. The notes share the
// broker with channels: the bus is one channel of MaxChannels once used,
// and keeps up to HistorySize notes in the broker's history (nobody reads
// them back), each at most maxNoteBytes.

// busChannel is the bus's channel in the broker.
const busChannel = "$fanout.nodes"

// sendQueue bounds the notes waiting to be published.
const sendQueue = 1024

// maxNoteBytes bounds one note, payload and envelope, as published.
const maxNoteBytes = 32 << 10

// busBatch is the most notes published in one broker round trip.
const busBatch = 64

// nodeID names one run of a node: a restarted node has a new one.
type nodeID string

// errBusFull is returned by send when sendQueue is full.
var errBusFull = errors.New("pubsub: node bus queue full")

// note is what the bus publishes.
type note struct {
	From nodeID          `json:"from"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// bus is one node's end of the node bus.
type bus struct {
	id      nodeID
	queue   chan []byte
	dropped atomic.Uint64 // notes not sent: queue full or broker down
	pending atomic.Int64  // notes queued or being published
	routed  atomic.Bool   // the broker routes the bus's notes here
	broker  Broker        // set by route

	mu       sync.RWMutex
	handlers map[string]func(from nodeID, payload json.RawMessage)
}

func newBus() *bus {
	return &bus{id: nodeID(NewEpoch()), queue: make(chan []byte, sendQueue), handlers: make(map[string]func(nodeID, json.RawMessage))}
}

// handle makes f receive every note of kind, from every node (this one
// included), in each sender's order. f runs on the broker's delivery
// goroutine: it must not block, nor wait on the broker (send is fine).
// payload is only valid during the call. Call it before Start.
func (b *bus) handle(kind string, f func(from nodeID, payload json.RawMessage)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[kind] = f
}

// send queues payload (marshalled to JSON) for every node's handler of
// kind, without waiting: errBusFull when the queue is full, an error when
// the note would pass maxNoteBytes. Safe for concurrent use; notes sent
// from one goroutine arrive in that order.
func (b *bus) send(kind string, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("pubsub: bus note %s: %w", kind, err)
	}
	return b.sendRaw(kind, data)
}

func (b *bus) sendRaw(kind string, data json.RawMessage) error {
	msg, err := json.Marshal(note{From: b.id, Kind: kind, Data: data})
	if err != nil {
		return fmt.Errorf("pubsub: bus note %s: %w", kind, err)
	}
	if len(msg) > maxNoteBytes {
		return fmt.Errorf("pubsub: bus note %s: %d bytes, at most %d", kind, len(msg), maxNoteBytes)
	}
	b.pending.Add(1)
	select {
	case b.queue <- msg:
		return nil
	default:
		b.pending.Add(-1)
		b.dropped.Add(1)
		return errBusFull
	}
}

// flush waits up to timeout for the queued notes to be published (or
// dropped): a node that closes sends its last notes.
func (b *bus) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for b.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// deliver hands a note from the broker to its handler; a note of an
// unknown kind (a newer node's) is ignored.
func (b *bus) deliver(data []byte) {
	var nt note
	if json.Unmarshal(data, &nt) != nil || nt.From == "" {
		return
	}
	b.mu.RLock()
	f := b.handlers[nt.Kind]
	b.mu.RUnlock()
	if f != nil {
		f(nt.From, nt.Data)
	}
}

// route asks a Router broker for the bus's notes, for good.
func (b *bus) route(broker Broker) {
	b.broker = broker
	if r, ok := broker.(Router); ok {
		r.Route(busChannel, func() { b.routed.Store(true) })
	} else {
		b.routed.Store(true)
	}
}

// live reports whether notes sent now reach every node, this one
// included: the broker is connected and routes the bus here.
func (b *bus) live() bool { return b.routed.Load() && b.broker.Ready() }

// run publishes the queued notes, in order, up to busBatch per round trip,
// until ctx is done.
func (b *bus) run(ctx context.Context, broker Broker) {
	for {
		// A new batch each time: a broker call that gave up at ctx's end may
		// still read the last one (the Redis broker's pipeline does).
		batch := make([]Message, 0, busBatch)
		select {
		case <-ctx.Done():
			return
		case msg := <-b.queue:
			batch = append(batch, Message{Channel: busChannel, Data: msg})
		}
	more:
		for len(batch) < busBatch {
			select {
			case msg := <-b.queue:
				batch = append(batch, Message{Channel: busChannel, Data: msg})
			default:
				break more
			}
		}
		b.publish(ctx, broker, batch)
		b.pending.Add(-int64(len(batch)))
	}
}

// publish sends batch in order, dropping it while the broker is down.
func (b *bus) publish(ctx context.Context, broker Broker, batch []Message) {
	if !broker.Ready() {
		b.dropped.Add(uint64(len(batch)))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	if bp, ok := broker.(BatchPublisher); ok {
		_, errs := bp.PublishBatch(ctx, batch)
		for _, err := range errs {
			if err != nil {
				b.dropped.Add(1)
			}
		}
		return
	}
	for i, m := range batch {
		if _, err := broker.Publish(ctx, m.Channel, m.Data); err != nil {
			b.dropped.Add(uint64(len(batch) - i)) // later ones would overtake it
			return
		}
	}
}
