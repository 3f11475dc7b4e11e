// Package server is Fanout's WebSocket engine: RFC 6455 over an epoll
// netpoller, a bounded read pool and one write worker per core, with no
// goroutine and no buffer per idle connection. It knows nothing of
// channels, history or brokers:
// package server/pubsub builds those on the API exported here (Server,
// Conn, Hub, frame.Prepared and the Config hooks).
//
//	accept ─▶ raw fd registered with poller (edge-triggered read)
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
//	non-blocking send per member coalescing every pending frame; the rest
//	waits in the conn's bounded queue and EPOLLOUT resumes it; past
//	Config.SendQueueBytes the conn is evicted.
//
// Handler mounts the same engine on a net/http mux (gobwas/ws HTTPUpgrader);
// the hijacked socket joins the same poller. Requests on Serve's listener
// that are not upgrades go to Config.HTTPHandler. One shared ticker
// (timers.go) drives handshake, idle, ping and close deadlines.
//
// Workers never block on a socket: every read and write is non-blocking and
// ends at EAGAIN, a partial frame stays in the parser's pooled buffer, and a
// full socket parks its queue until EPOLLOUT.
//
// Stopping: Drain (drain.go) takes the server out of readiness, accepts
// for a grace, then closes the connections paced, with 1012 and a
// reconnect hint, for rolling restarts without reconnect storms; Shutdown
// then closes what is left with 1001 and releases everything. Admission
// (admission.go) bounds new connections per second (MaxHandshakeRate) for
// the storm that reaches the other nodes.
package server
