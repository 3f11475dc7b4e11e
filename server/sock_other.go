//go:build !linux

package server

import "golang.org/x/sys/unix"

// iovMax bounds the buffers of one gather write; off Linux nothing is sent.
const iovMax = 1024

// supported is why the engine does not run here: it needs epoll and Linux's
// raw socket calls. New returns it.
var supported error = ErrUnsupported

func (s *sock) read(p []byte) (int, error) { return 0, ErrUnsupported }

func (s *sock) send(iov []unix.Iovec, bufs [][]byte) (int, error) { return 0, ErrUnsupported }

func readFD(fd int32, p []byte) (int, error) { return 0, ErrUnsupported }

func sendIovec(fd int32, iov []unix.Iovec) (int, unix.Errno) { return 0, unix.ENOSYS }

func socketPair() ([2]int, error) { return [2]int{-1, -1}, ErrUnsupported }
