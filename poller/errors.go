package poller

import "errors"

var (
	// ErrUnsupported is returned by New on platforms without epoll.
	ErrUnsupported = errors.New("poller: epoll is not supported on this platform")

	// ErrStale is returned when a Token no longer names the current
	// registration of its fd (it was deregistered, possibly re-registered by
	// a newer socket).
	ErrStale = errors.New("poller: stale registration")

	// ErrFDRange is returned by Register for a descriptor outside the table
	// sized from the open-files limit.
	ErrFDRange = errors.New("poller: fd outside the descriptor table")

	// ErrNotSocket is returned by Detach for a connection that does not
	// expose a socket (syscall.Conn).
	ErrNotSocket = errors.New("poller: connection has no raw socket")

	// ErrClosed is returned after Close.
	ErrClosed = errors.New("poller: closed")
)
