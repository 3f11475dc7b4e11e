//go:build linux

package poller

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/mailru/easygo/netpoll"
	"golang.org/x/sys/unix"
)

const (
	readEvents  = netpoll.EPOLLIN | netpoll.EPOLLRDHUP | netpoll.EPOLLET
	writeEvents = netpoll.EPOLLOUT | netpoll.EPOLLONESHOT
)

// slot is the per-fd state, indexed by fd number.
type slot struct {
	gen      atomic.Uint32 // bumped by Register and Deregister
	inWrite  atomic.Bool   // fd is in its write epoll set
	writeArm sync.Mutex    // serialises the lazy Add to the write set
}

// Poller spreads fds over several read and write epoll instances. It is safe
// for concurrent use.
type Poller struct {
	read   []*netpoll.Epoll
	write  []*netpoll.Epoll
	slots  []slot
	closed atomic.Bool
}

// New starts n read and n write epoll instances (each with its own wait
// goroutine, owned by easygo) and sizes the fd table to maxFD. onError receives epoll_wait failures; nil ignores them.
func New(n, maxFD int, onError func(error)) (*Poller, error) {
	if n < 1 {
		n = 1
	}
	cfg := &netpoll.EpollConfig{OnWaitError: onError}
	if onError == nil {
		cfg.OnWaitError = func(error) {}
	}
	p := &Poller{slots: make([]slot, maxFD)}
	for range n {
		r, err := netpoll.EpollCreate(cfg)
		if err != nil {
			p.Close()
			return nil, wrapErr("epoll_create", err)
		}
		p.read = append(p.read, r)
		w, err := netpoll.EpollCreate(cfg)
		if err != nil {
			p.Close()
			return nil, wrapErr("epoll_create", err)
		}
		p.write = append(p.write, w)
	}
	return p, nil
}

// Register adds fd with read interest (an event at once if it is already
// readable), and returns its token.
// Write interest is added lazily by ArmWrite.
func (p *Poller) Register(fd int, h Handler) (Token, error) {
	if p.closed.Load() {
		return Token{}, ErrClosed
	}
	if fd < 0 || fd >= len(p.slots) {
		return Token{}, fmt.Errorf("%w: fd %d, table %d", ErrFDRange, fd, len(p.slots))
	}
	s := &p.slots[fd]
	gen := s.gen.Add(1)
	s.inWrite.Store(false)
	ep := p.read[fd%len(p.read)]
	if err := ep.Add(fd, readEvents, guard(s, gen, h.Readable)); err != nil {
		s.gen.Add(1)
		if err != netpoll.ErrRegistered && err != netpoll.ErrClosed {
			// easygo keeps the callback of an Add whose epoll_ctl failed
			// (EBADF, say), and would refuse the next socket given this
			// fd number with ErrRegistered: drop it.
			_ = ep.Del(fd)
		}
		return Token{}, wrapErr("epoll_ctl add", err)
	}
	return Token{FD: int32(fd), Gen: gen}, nil
}

// ArmRead asks for a read event now if t's fd is readable: it reports bytes
// a reader left unread, which no new edge would.
func (p *Poller) ArmRead(t Token) error {
	fd := int(t.FD)
	if t.Gen == 0 || p.slots[fd].gen.Load() != t.Gen {
		return ErrStale
	}
	return wrapErr("epoll_ctl mod", p.read[fd%len(p.read)].Mod(fd, readEvents))
}

// ArmWrite arms one-shot write interest for t, adding the fd to its write
// epoll set on first use.
func (p *Poller) ArmWrite(t Token, h Handler) error {
	fd := int(t.FD)
	s := &p.slots[fd]
	if t.Gen == 0 || s.gen.Load() != t.Gen {
		return ErrStale
	}
	ep := p.write[fd%len(p.write)]
	if s.inWrite.Load() {
		return wrapErr("epoll_ctl mod", ep.Mod(fd, writeEvents))
	}
	s.writeArm.Lock()
	defer s.writeArm.Unlock()
	if s.gen.Load() != t.Gen { // Deregister won the race
		return ErrStale
	}
	if s.inWrite.Load() {
		return wrapErr("epoll_ctl mod", ep.Mod(fd, writeEvents))
	}
	if err := ep.Add(fd, writeEvents, guard(s, t.Gen, h.Writable)); err != nil {
		return wrapErr("epoll_ctl add", err)
	}
	s.inWrite.Store(true)
	return nil
}

// Deregister removes t's fd from both epoll sets and invalidates t, so an
// event already taken from the kernel is dropped. Call it before closing the
// fd; it is safe to call more than once.
func (p *Poller) Deregister(t Token) error {
	fd := int(t.FD)
	s := &p.slots[fd]
	if t.Gen == 0 || !s.gen.CompareAndSwap(t.Gen, t.Gen+1) {
		return ErrStale
	}
	err := p.read[fd%len(p.read)].Del(fd)
	s.writeArm.Lock()
	if s.inWrite.Load() {
		s.inWrite.Store(false)
		if werr := p.write[fd%len(p.write)].Del(fd); err == nil {
			err = werr
		}
	}
	s.writeArm.Unlock()
	if err == netpoll.ErrClosed {
		return nil
	}
	return wrapErr("epoll_ctl del", err)
}

// Close stops every epoll instance and waits for their goroutines. Later
// calls return ErrClosed.
func (p *Poller) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	for _, ep := range append(p.read, p.write...) {
		_ = ep.Close()
	}
	return nil
}

// guard wraps f so that it only sees events of registration gen of slot s:
// easygo may run a callback after Del, when the fd number can already belong
// to a newer socket. It also drops easygo's "instance closed" notification.
func guard(s *slot, gen uint32, f func(Event)) func(netpoll.EpollEvent) {
	return func(ev netpoll.EpollEvent) {
		if Event(ev) == eventClosed || s.gen.Load() != gen {
			return
		}
		f(Event(ev))
	}
}

// wrapErr names the syscall behind an errno; other errors (nil, easygo's
// sentinels) pass through.
func wrapErr(op string, err error) error {
	if errno, ok := err.(unix.Errno); ok {
		return os.NewSyscallError(op, errno)
	}
	return err
}
