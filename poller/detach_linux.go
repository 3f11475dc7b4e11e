//go:build linux

package poller

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Detach moves c's socket out of Go's own poller into a raw non-blocking fd
// owned by the caller, ready for Register: it duplicates the descriptor and
// closes c, so the connection costs one fd and Go's runtime forgets it. c
// must expose its socket (syscall.Conn); it is closed in every case.
func Detach(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		c.Close()
		return -1, ErrNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		c.Close()
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(orig uintptr) {
		fd, dupErr = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		dupErr = err
	}
	c.Close()
	if dupErr != nil {
		return -1, wrapErr("fcntl dupfd", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, wrapErr("fcntl nonblock", err)
	}
	return fd, nil
}
