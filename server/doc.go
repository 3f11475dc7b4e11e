// Package server is Fanout's WebSocket engine: RFC 6455 over an epoll
// netpoller, a bounded read pool and one write worker per core, with no
// goroutine and no buffer per idle connection. It knows nothing of
// channels, history or brokers:
// package server/pubsub builds those on the API exported here (Server,
// Conn, Hub, frame.Prepared and the Config hooks).
//
//	accept ─▶ admission (admission.go: 503 over capacity, 429 per IP; the
//	           slot it takes travels with the connection, given back once)
//	       ─▶ raw fd registered with poller (edge-triggered read)
//	           │ readable (an event during a task only tells it to read on)
//	           ▼
//	read pool task: non-blocking reads into a pooled buffer until drained
//	  handshake: bytes collected in a pooled buffer until the blank line,
//	             then origin, JWT (Config.Auth) and OnConnect decide, and
//	             the gobwas/ws Upgrader answers; later bytes are frames
//	  open:      frame.Parser → OnMessage / pong / close handshake
//	           │ Hub.Broadcast(msg): frame.Prepared built once
//	           ▼
//	write worker (one per core), a task per shard of 256 fds: one
//	non-blocking gather write (send or sendmsg) per member coalescing every
//	pending frame; the rest waits in the conn's bounded queue and EPOLLOUT
//	resumes it; past Config.SendQueueBytes the conn is evicted.
//
// Every connection is admitted on one path (admission.go), whichever way it
// came: Serve's listener, plain or TLS; a trusted proxy's PROXY header or
// forwarding header, which names the client the per-IP limits count; or
// Handler, which mounts the same engine on a net/http mux (gobwas/ws
// HTTPUpgrader) and hands the hijacked socket to the same poller. Requests
// on Serve's listener that are not upgrades go to Config.HTTPHandler. One
// shared ticker (timers.go) drives handshake, idle, ping and close
// deadlines.
//
// TLS: crypto/tls runs the handshake, on a goroutine bounded by the
// handshake deadline (tls.go). A TLS 1.3 connection then leaves it
// (tls13.go): the server owns its socket like a plain one and
// internal/tlsrec opens its records and seals what a flush owes into as few
// records as fit, sent with one send; an idle one keeps its keys but no
// AEAD state. TLS 1.2 stays with tls.Conn, whose buffered records epoll
// cannot see: its reads are requeued on the read pool instead of re-armed.
//
// A Conn is carved into parts, each owned by its files (the table at the
// top of conn.go, with the lock order): the read part (read.go), the send
// queue (write.go), the lifecycle (close.go, timers.go), the application's
// state (conn.go), the admission slot (admission.go) and the handshake
// (upgrade.go, proxy.go, tls.go), which is dropped at the 101. An idle
// connection holds no goroutine, no buffer, no parser and no queue: a
// parser is lent while a frame or message is incomplete, a queue while
// frames wait for the socket.
//
// Workers never block on a socket: every read and write is non-blocking and
// ends at EAGAIN, a partial frame keeps its lent parser and pooled buffer,
// and a full socket parks its queue until EPOLLOUT. Off Linux, New returns
// ErrUnsupported.
//
// Stopping: Drain (drain.go) takes the server out of readiness, accepts
// for a grace, then closes the connections paced, with 1012 and a
// reconnect hint, for rolling restarts without reconnect storms; Shutdown
// then closes what is left with 1001 and releases everything. Admission
// (admission.go) bounds new connections per second (MaxHandshakeRate) for
// the storm that reaches the other nodes.
package server
