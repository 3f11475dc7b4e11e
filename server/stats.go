package server

import "sync/atomic"

// counters are the server's hot-path counters: plain atomics, read by Stats.
type counters struct {
	accepted         atomic.Uint64
	upgraded         atomic.Uint64
	handshakesFailed atomic.Uint64
	rejectedCapacity atomic.Uint64
	messagesIn       atomic.Uint64
	bytesIn          atomic.Uint64
	framesOut        atomic.Uint64
	bytesOut         atomic.Uint64
	writeCalls       atomic.Uint64
	broadcasts       atomic.Uint64
	slowConsumers    atomic.Uint64
	poolSaturated    atomic.Uint64
	errors           atomic.Uint64
	rateLimited      atomic.Uint64
	rejectedIP       atomic.Uint64
	authFailures     atomic.Uint64
	invalidMessages  atomic.Uint64
	broadcastDrops   atomic.Uint64
	publishersPaused atomic.Uint64
	framesOffered    atomic.Uint64
	perWrite         [writeBuckets]atomic.Uint64
	closed           [reasonCount]atomic.Uint64
}

// Stats is a snapshot of the server's counters since New.
type Stats struct {
	Live             int    // open connections, handshakes included
	Accepted         uint64 // sockets accepted or hijacked
	Upgraded         uint64 // completed WebSocket handshakes
	HandshakesFailed uint64 // bad, rejected or timed-out upgrade requests
	RejectedCapacity uint64 // answered 503 because of MaxConns
	MessagesIn       uint64 // text and binary messages received
	BytesIn          uint64 // bytes read from sockets after the handshake
	FramesOut        uint64 // frames fully written (deliveries)
	BytesOut         uint64 // bytes written to sockets
	WriteCalls       uint64 // writev syscalls made
	Broadcasts       uint64 // Hub.Broadcast calls (one serialization each)
	SlowConsumers    uint64 // connections evicted for a full send queue
	PoolSaturated    uint64 // events that found a worker pool full
	Errors           uint64 // connection errors reported to OnError
	RateLimited      uint64 // messages over a connection's rate (dropped, or closed with 1008)
	RejectedIP       uint64 // upgrades answered 429 by the per-IP limits
	AuthFailures     uint64 // upgrades answered 401
	InvalidMessages  uint64 // messages refused by Config.CheckMessage
	BroadcastDrops   uint64 // broadcast frames a hub shard refused (backlog full)
	PublishersPaused uint64 // reads stopped because a hub the reader belongs to was behind
	// FramesPerWrite counts writev calls by the frames they offered:
	// [i] counts calls with at most 2^i frames (and more than 2^(i-1));
	// the last bucket holds everything above. Under load the mass moves
	// up: queued and pending frames share a syscall.
	FramesPerWrite [writeBuckets]uint64
	FramesOffered  uint64 // frames offered to writev calls, the sum behind FramesPerWrite
	Closed         map[string]uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Live:             int(s.live.Load()),
		Accepted:         s.stats.accepted.Load(),
		Upgraded:         s.stats.upgraded.Load(),
		HandshakesFailed: s.stats.handshakesFailed.Load(),
		RejectedCapacity: s.stats.rejectedCapacity.Load(),
		MessagesIn:       s.stats.messagesIn.Load(),
		BytesIn:          s.stats.bytesIn.Load(),
		FramesOut:        s.stats.framesOut.Load(),
		BytesOut:         s.stats.bytesOut.Load(),
		WriteCalls:       s.stats.writeCalls.Load(),
		Broadcasts:       s.stats.broadcasts.Load(),
		SlowConsumers:    s.stats.slowConsumers.Load(),
		PoolSaturated:    s.stats.poolSaturated.Load(),
		Errors:           s.stats.errors.Load(),
		RateLimited:      s.stats.rateLimited.Load(),
		RejectedIP:       s.stats.rejectedIP.Load(),
		AuthFailures:     s.stats.authFailures.Load(),
		InvalidMessages:  s.stats.invalidMessages.Load(),
		BroadcastDrops:   s.stats.broadcastDrops.Load(),
		PublishersPaused: s.stats.publishersPaused.Load(),
		FramesOffered:    s.stats.framesOffered.Load(),
		Closed:           make(map[string]uint64),
	}
	for i := range st.FramesPerWrite {
		st.FramesPerWrite[i] = s.stats.perWrite[i].Load()
	}
	for r := range s.stats.closed {
		if n := s.stats.closed[r].Load(); n > 0 {
			st.Closed[CloseReason(r).String()] = n
		}
	}
	return st
}
