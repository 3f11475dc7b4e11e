//go:build linux

package poller

import (
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recorder is a Handler that reports events on channels.
type recorder struct{ read, write chan Event }

func newRecorder() *recorder {
	return &recorder{read: make(chan Event, 16), write: make(chan Event, 16)}
}

func (r *recorder) Readable(ev Event) { r.read <- ev }
func (r *recorder) Writable(ev Event) { r.write <- ev }

func pair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New(2, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func expect(t *testing.T, ch chan Event, what string) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s event", what)
		return 0
	}
}

// expectNone is a negative check: nothing may arrive within a short window.
func expectNone(t *testing.T, ch chan Event, what string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected %s event %#x", what, ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// An event comes for data present at Register and for each new arrival,
// also with the old still unread; ArmRead reports data left unread but
// nothing once it is read.
func TestPoller_EdgeTriggeredReads(t *testing.T) {
	t.Parallel()
	p := newPoller(t)
	a, b := pair(t)
	r := newRecorder()
	tok, err := p.Register(a, r)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("hi"))
	if ev := expect(t, r.read, "read"); ev&EventRead == 0 {
		t.Fatalf("event %#x without EventRead", ev)
	}
	expectNone(t, r.read, "second read without new data")
	unix.Write(b, []byte("more"))
	expect(t, r.read, "read for new data, the old still unread")
	if err := p.ArmRead(tok); err != nil {
		t.Fatal(err)
	}
	expect(t, r.read, "read after ArmRead with unread data")
	buf := make([]byte, 16)
	unix.Read(a, buf)
	if err := p.ArmRead(tok); err != nil {
		t.Fatal(err)
	}
	expectNone(t, r.read, "read with nothing to read")
}

// A Register that fails in epoll_ctl (the fd was closed) must not leave
// the fd number taken: the next socket given that number registers. Not
// parallel: it reuses an fd number, which another test could take.
func TestPoller_FailedRegisterFreesTheNumber(t *testing.T) {
	p := newPoller(t)
	c, d := pair(t)
	// a is a number that was a socket and is closed: c's, duplicated and
	// closed. Registering it fails; then c is placed on that number again.
	a, err := unix.Dup(c)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(a)
	if _, err := p.Register(a, newRecorder()); err == nil {
		t.Fatal("Register of a closed fd succeeded")
	}
	if err := unix.Dup2(c, a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(a) })
	r := newRecorder()
	if _, err := p.Register(a, r); err != nil {
		t.Fatalf("Register of a new socket with a failed Register's number: %v", err)
	}
	unix.Write(d, []byte("hi"))
	expect(t, r.read, "read on the new socket")
}

func TestPoller_WriteInterest(t *testing.T) {
	t.Parallel()
	p := newPoller(t)
	a, b := pair(t)
	r := newRecorder()
	tok, err := p.Register(a, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ArmWrite(tok, r); err != nil {
		t.Fatal(err)
	}
	expect(t, r.write, "write on a writable socket")
	// Fill the socket, arm again: silent until the peer drains.
	chunk := make([]byte, 64<<10)
	for {
		if _, err := unix.Write(a, chunk); err == unix.EAGAIN {
			break
		}
	}
	if err := p.ArmWrite(tok, r); err != nil {
		t.Fatal(err)
	}
	expectNone(t, r.write, "write on a full socket")
	for {
		if _, err := unix.Read(b, chunk); err == unix.EAGAIN {
			break
		}
	}
	expect(t, r.write, "write after the peer drained")
	// The read registration was not disturbed by the write set.
	unix.Write(b, []byte("x"))
	expect(t, r.read, "read after write interest")
}

func TestPoller_StaleGeneration(t *testing.T) {
	t.Parallel()
	p := newPoller(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	old := newRecorder()
	oldTok, err := p.Register(fds[0], old)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Deregister(oldTok); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	// The kernel hands out the lowest free number: the new socket reuses it.
	nfds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nfds[0])
	defer unix.Close(nfds[1])
	if nfds[0] != int(oldTok.FD) {
		t.Skipf("fd %d not reused (got %d, %d)", oldTok.FD, nfds[0], nfds[1])
	}
	cur := newRecorder()
	curTok, err := p.Register(nfds[0], cur)
	if err != nil {
		t.Fatal(err)
	}
	// A late callback of the old registration, as easygo may still run it.
	late := guard(&p.slots[oldTok.FD], oldTok.Gen, old.Readable)
	late(1)
	expectNone(t, old.read, "stale event on the old handler")
	expectNone(t, cur.read, "stale event on the new handler")
	guard(&p.slots[curTok.FD], curTok.Gen, cur.Readable)(1)
	expect(t, cur.read, "current event")
	for name, err := range map[string]error{
		"ArmRead":    p.ArmRead(oldTok),
		"ArmWrite":   p.ArmWrite(oldTok, old),
		"Deregister": p.Deregister(oldTok),
	} {
		if !errors.Is(err, ErrStale) {
			t.Errorf("%s with the old token: %v, want ErrStale", name, err)
		}
	}
	unix.Write(nfds[1], []byte("x"))
	expect(t, cur.read, "read on the new registration")
}

func TestPoller_DeregisterRacesArmWrite(t *testing.T) {
	t.Parallel()
	p := newPoller(t)
	a, _ := pair(t)
	r := newRecorder()
	for range 50 {
		tok, err := p.Register(a, r)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { _ = p.ArmWrite(tok, r) })
		}
		wg.Go(func() { _ = p.Deregister(tok) })
		wg.Wait()
		_ = p.Deregister(tok)
		for len(r.write) > 0 {
			<-r.write
		}
	}
	// Nothing of the old registrations is left in either set.
	tok, err := p.Register(a, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ArmWrite(tok, r); err != nil {
		t.Fatalf("ArmWrite after the races: %v", err)
	}
}

func TestPoller_HangUp(t *testing.T) {
	t.Parallel()
	p := newPoller(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	r := newRecorder()
	if _, err := p.Register(fds[0], r); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[1])
	if ev := expect(t, r.read, "hang-up"); ev&(EventRdHup|EventHup) == 0 {
		t.Fatalf("event %#x without RDHUP/HUP", ev)
	}
}

func TestPoller_Limits(t *testing.T) {
	t.Parallel()
	p, err := New(1, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(8, newRecorder()); !errors.Is(err, ErrFDRange) {
		t.Fatalf("fd past the table: %v", err)
	}
	if err := p.Deregister(Token{}); !errors.Is(err, ErrStale) {
		t.Fatalf("zero token: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Register(3, newRecorder()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
}

// poller knows nothing of the rest of the module.
func TestDeps(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/fanout-ws/fanout/poller",
			strings.HasPrefix(dep, "golang.org/x/sys/"),
			strings.HasPrefix(dep, "github.com/mailru/easygo/"):
		default:
			t.Errorf("poller depends on %s", dep)
		}
	}
}

func BenchmarkPoller_ArmRead(b *testing.B) {
	p, err := New(1, 4096, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	tok, err := p.Register(fds[0], newRecorder())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ArmRead(tok); err != nil {
			b.Fatal(err)
		}
	}
}
