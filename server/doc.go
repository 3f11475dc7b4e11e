// Package server is Fanout's WebSocket server: RFC 6455 over an epoll
// netpoller and two bounded worker pools, with no goroutine and no buffer per
// idle connection.
//
//	accept ─▶ raw fd registered with poller (one-shot read)
//	           │ readable
//	           ▼
//	read pool task: one non-blocking read into a pooled buffer
//	  handshake: bytes collected in a pooled buffer until the blank line,
//	             then gobwas/ws Upgrader over those bytes; later bytes are frames
//	  open:      frame.Parser → OnMessage / pong / close handshake
//	           │ Hub.Broadcast(msg): frame.Prepared built once
//	           ▼
//	write pool task per shard of 256 fds: one non-blocking writev per member,
//	coalescing every pending frame; the rest waits in the conn's bounded queue
//	and EPOLLOUT resumes it; past Config.SendQueueBytes the conn is evicted.
//
// Handler mounts the same engine on a net/http mux (gobwas/ws HTTPUpgrader);
// the hijacked socket joins the same poller. One shared ticker (timers.go)
// drives handshake, idle, ping and close deadlines.
//
// Workers never block on a socket: every read and write is non-blocking and
// ends at EAGAIN, a partial frame stays in the parser's pooled buffer, and a
// full socket parks its queue until EPOLLOUT.
package server
