package server

import "sync/atomic"

// counters are the server's hot-path counters: plain atomics, read by Stats.
type counters struct {
	accepted         atomic.Uint64
	upgraded         atomic.Uint64
	handshakesFailed atomic.Uint64
	rejectedCapacity atomic.Uint64
	rejectedRate     atomic.Uint64
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
	compressedConns  atomic.Uint64
	inflateErrors    atomic.Uint64
	tlsWrites        atomic.Uint64
	tlsRecords       atomic.Uint64
	recordsPerWrite  [writeBuckets]atomic.Uint64
	closed           [reasonCount]atomic.Uint64
}

// Stats is a snapshot of the server's counters since New.
type Stats struct {
	Live             int    // open connections, handshakes included
	Accepted         uint64 // sockets accepted or hijacked
	Upgraded         uint64 // completed WebSocket handshakes
	HandshakesFailed uint64 // bad, rejected or timed-out upgrade requests
	RejectedCapacity uint64 // answered 503 because of MaxConns
	RejectedRate     uint64 // answered 503 because of MaxHandshakeRate
	MessagesIn       uint64 // text and binary messages received
	BytesIn          uint64 // bytes read from sockets after the handshake
	FramesOut        uint64 // frames fully written (deliveries)
	BytesOut         uint64 // bytes written to sockets
	WriteCalls       uint64 // gather writes made (send or sendmsg calls)
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
	// FramesPerWrite counts write syscalls by the frames they offered:
	// [i] counts calls with at most 2^i frames (and more than 2^(i-1));
	// the last bucket holds everything above. Under load the mass moves
	// up: queued and pending frames share a syscall.
	FramesPerWrite [writeBuckets]uint64
	FramesOffered  uint64 // frames offered to write syscalls, the sum behind FramesPerWrite
	// permessage-deflate
	CompressedConns  uint64 // upgrades that negotiated permessage-deflate
	InflateErrors    uint64 // compressed messages refused: invalid DEFLATE or inflated past MaxMessageBytes
	CompressCalls    uint64 // messages compressed: at most one per broadcast, whatever the receivers (frame.Deflater's count)
	CompressBytesIn  uint64 // their payload bytes before compression
	CompressBytesOut uint64 // and after
	// TLS 1.3 connections after their handshake (records sealed here):
	// sends of sealed records, application data records sealed (at most
	// 16 KiB of frames each), and the sends by the records they carried,
	// bucketed as FramesPerWrite is.
	TLSWrites       uint64
	TLSRecords      uint64
	RecordsPerWrite [writeBuckets]uint64
	Closed          map[string]uint64
}

// counterTable is the one list of the server's counters: each row ties an
// atomic in counters to its Stats field and its Prometheus metric. Adding
// a counter is a field in each struct and a row here. (The frames-per-write
// histogram, FramesPerWrite and FramesOffered, is exported beside it.)
var counterTable = [...]struct {
	metric, help string
	live         func(*counters) *atomic.Uint64
	stat         func(*Stats) *uint64
}{
	{"fanout_connections_accepted_total", "Sockets accepted or hijacked.",
		func(c *counters) *atomic.Uint64 { return &c.accepted }, func(s *Stats) *uint64 { return &s.Accepted }},
	{"fanout_handshakes_upgraded_total", "Completed WebSocket handshakes.",
		func(c *counters) *atomic.Uint64 { return &c.upgraded }, func(s *Stats) *uint64 { return &s.Upgraded }},
	{"fanout_handshakes_failed_total", "Bad, rejected or timed-out upgrade requests.",
		func(c *counters) *atomic.Uint64 { return &c.handshakesFailed }, func(s *Stats) *uint64 { return &s.HandshakesFailed }},
	{"fanout_handshakes_over_capacity_total", "Upgrade requests answered 503 because of MaxConns.",
		func(c *counters) *atomic.Uint64 { return &c.rejectedCapacity }, func(s *Stats) *uint64 { return &s.RejectedCapacity }},
	{"fanout_handshakes_over_rate_total", "New connections answered 503 because of MaxHandshakeRate.",
		func(c *counters) *atomic.Uint64 { return &c.rejectedRate }, func(s *Stats) *uint64 { return &s.RejectedRate }},
	{"fanout_messages_in_total", "Text and binary messages received.",
		func(c *counters) *atomic.Uint64 { return &c.messagesIn }, func(s *Stats) *uint64 { return &s.MessagesIn }},
	{"fanout_bytes_in_total", "Bytes read from sockets after the handshake.",
		func(c *counters) *atomic.Uint64 { return &c.bytesIn }, func(s *Stats) *uint64 { return &s.BytesIn }},
	{"fanout_frames_out_total", "Frames fully written to sockets (deliveries).",
		func(c *counters) *atomic.Uint64 { return &c.framesOut }, func(s *Stats) *uint64 { return &s.FramesOut }},
	{"fanout_bytes_out_total", "Bytes written to sockets.",
		func(c *counters) *atomic.Uint64 { return &c.bytesOut }, func(s *Stats) *uint64 { return &s.BytesOut }},
	{"fanout_write_syscalls_total", "Write syscalls (send, sendmsg); below frames_out when queued frames coalesce.",
		func(c *counters) *atomic.Uint64 { return &c.writeCalls }, func(s *Stats) *uint64 { return &s.WriteCalls }},
	{"fanout_broadcasts_total", "Hub broadcasts (each serialized once).",
		func(c *counters) *atomic.Uint64 { return &c.broadcasts }, func(s *Stats) *uint64 { return &s.Broadcasts }},
	{"fanout_broadcast_drops_total", "Broadcast frames a hub shard refused because its backlog was full.",
		func(c *counters) *atomic.Uint64 { return &c.broadcastDrops }, func(s *Stats) *uint64 { return &s.BroadcastDrops }},
	{"fanout_slow_consumer_evictions_total", "Connections closed because their send queue passed SendQueueBytes.",
		func(c *counters) *atomic.Uint64 { return &c.slowConsumers }, func(s *Stats) *uint64 { return &s.SlowConsumers }},
	{"fanout_pool_saturated_total", "Events that found a worker pool busy.",
		func(c *counters) *atomic.Uint64 { return &c.poolSaturated }, func(s *Stats) *uint64 { return &s.PoolSaturated }},
	{"fanout_connection_errors_total", "Connection errors reported to OnError.",
		func(c *counters) *atomic.Uint64 { return &c.errors }, func(s *Stats) *uint64 { return &s.Errors }},
	{"fanout_rate_limited_total", "Messages over a connection's message or byte rate.",
		func(c *counters) *atomic.Uint64 { return &c.rateLimited }, func(s *Stats) *uint64 { return &s.RateLimited }},
	{"fanout_handshakes_rejected_ip_total", "Upgrades answered 429 by the per-IP connection or handshake limits.",
		func(c *counters) *atomic.Uint64 { return &c.rejectedIP }, func(s *Stats) *uint64 { return &s.RejectedIP }},
	{"fanout_auth_failures_total", "Upgrades answered 401: missing, malformed, expired or wrongly signed tokens.",
		func(c *counters) *atomic.Uint64 { return &c.authFailures }, func(s *Stats) *uint64 { return &s.AuthFailures }},
	{"fanout_invalid_messages_total", "Messages refused by the application's validator (closed with 1008).",
		func(c *counters) *atomic.Uint64 { return &c.invalidMessages }, func(s *Stats) *uint64 { return &s.InvalidMessages }},
	{"fanout_handshakes_compressed_total", "Upgrades that negotiated permessage-deflate.",
		func(c *counters) *atomic.Uint64 { return &c.compressedConns }, func(s *Stats) *uint64 { return &s.CompressedConns }},
	{"fanout_inflate_errors_total", "Compressed messages refused: invalid DEFLATE data or inflated past MaxMessageBytes.",
		func(c *counters) *atomic.Uint64 { return &c.inflateErrors }, func(s *Stats) *uint64 { return &s.InflateErrors }},
	{"fanout_publishers_paused_total", "Read tasks that stopped reading a connection because a hub it belongs to was behind (TCP backpressure).",
		func(c *counters) *atomic.Uint64 { return &c.publishersPaused }, func(s *Stats) *uint64 { return &s.PublishersPaused }},
	{"fanout_tls_write_syscalls_total", "Sends of sealed TLS 1.3 records (one per flush a connection is owed, like plain writes).",
		func(c *counters) *atomic.Uint64 { return &c.tlsWrites }, func(s *Stats) *uint64 { return &s.TLSWrites }},
	{"fanout_tls_records_out_total", "TLS 1.3 application data records sealed, at most 16 KiB of frames each.",
		func(c *counters) *atomic.Uint64 { return &c.tlsRecords }, func(s *Stats) *uint64 { return &s.TLSRecords }},
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Live: int(s.live.Load()), FramesOffered: s.stats.framesOffered.Load(), Closed: make(map[string]uint64)}
	for _, row := range counterTable {
		*row.stat(&st) = row.live(&s.stats).Load()
	}
	for i := range st.FramesPerWrite {
		st.FramesPerWrite[i] = s.stats.perWrite[i].Load()
		st.RecordsPerWrite[i] = s.stats.recordsPerWrite[i].Load()
	}
	z := s.deflater.Stats()
	st.CompressCalls, st.CompressBytesIn, st.CompressBytesOut = z.Calls, z.BytesIn, z.BytesOut
	for r := range s.stats.closed {
		if n := s.stats.closed[r].Load(); n > 0 {
			st.Closed[CloseReason(r).String()] = n
		}
	}
	return st
}
