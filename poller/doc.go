// Package poller delivers socket readiness from epoll to callers without a
// goroutine per socket.
//
// It wraps easygo's exported netpoll.Epoll on raw file descriptors: Detach
// takes a socket from Go's own poller with one dup (F_DUPFD_CLOEXEC) and
// closes the original, and Register takes that raw fd (no os.File, whose
// finalizer could close a number a newer socket owns), so a connection
// costs exactly one descriptor. Reads are edge-triggered: an event per
// arrival, no epoll_ctl per read; the handler keeps one reader per socket
// and reads until it is drained (or calls ArmRead for what it leaves).
// Write interest is one-shot.
//
//	fd ──Register──▶ read epoll  (EPOLLIN|EPOLLRDHUP|EPOLLET) ──▶ Handler.Readable
//	   ──ArmWrite──▶ write epoll (EPOLLOUT|EPOLLONESHOT, added lazily) ─▶ Handler.Writable
//
// Reads and writes live in separate epoll sets because an EPOLL_CTL_MOD
// rewrites the whole event mask: arming write interest must never disturb a
// pending read registration, and vice versa.
//
// easygo snapshots callbacks before running them, so a callback can run after
// Deregister returned, when the fd number may already belong to a newer
// socket. Every registration therefore carries a generation; an event whose
// generation is stale is dropped here and never reaches the newer owner.
//
// Callbacks run on the epoll goroutine one after another: handlers must only
// hand work off (for example to a worker pool), never do it.
package poller
