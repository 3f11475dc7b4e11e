//go:build linux

package server

import (
	"net"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovMax is IOV_MAX on Linux: the most buffers one send takes.
const iovMax = 1024

// supported is nil: the engine runs on Linux (epoll, raw socket calls).
var supported error

// read does one non-blocking read. It returns unix.EAGAIN when nothing is
// there and (0, nil) at EOF.
//
// read and sendIovec use RawSyscall: every socket here is non-blocking
// (poller.Detach, the bridge's socketpair), so the call returns in
// microseconds whatever the peer does, and skipping entersyscall and
// exitsyscall keeps the P: sysmon never hands it to another thread
// mid-call, and no thread wakes to take it. Measured on one pinned core
// (issue 9): 19,000 x 5/s broadcast server CPU -9%, echo round trips +10%.
func (s *sock) read(p []byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.read(p)
	}
	if s.rec != nil {
		return s.rec.read(s.fd, p)
	}
	return readFD(s.fd, p)
}

// readFD is one raw non-blocking read(2).
func readFD(fd int32, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}

// send does one non-blocking gather write of bufs (at most iovMax of
// them) using iov as scratch, and returns the bytes written.
func (s *sock) send(iov []unix.Iovec, bufs [][]byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	if s.tls != nil {
		return s.tls.write(bufs[:min(len(bufs), iovMax)])
	}
	if s.rec != nil {
		return s.rec.send(s.fd, bufs[:min(len(bufs), iovMax)])
	}
	iov = iov[:0]
	for _, b := range bufs[:min(len(bufs), iovMax)] {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	if len(iov) == 0 {
		return 0, nil
	}
	for {
		n, errno := sendIovec(s.fd, iov)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return n, nil
	}
}

// sendIovec sends iov (at least one buffer) with send(2) or sendmsg(2),
// straight to the socket layer (writev(2)'s file layer, vfs_writev and
// fdget_pos, was 6% of a broadcast's kernel samples; end to end the change
// is within noise). MSG_NOSIGNAL: a closed peer is EPIPE, not a signal.
// A raw syscall, like read's.
func sendIovec(fd int32, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 1 {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len), unix.MSG_NOSIGNAL, 0, 0)
		return int(n), errno
	}
	msg := unix.Msghdr{Iov: &iov[0]}
	msg.SetIovlen(len(iov))
	n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
	return int(n), errno
}

// socketPair makes a connected pair of stream sockets, close-on-exec.
func socketPair() ([2]int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fds, os.NewSyscallError("socketpair", err)
	}
	return fds, nil
}
