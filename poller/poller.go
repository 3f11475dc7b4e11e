package poller

// Event is a readiness bit set as reported by epoll.
type Event uint32

// Readiness bits, equal to the Linux EPOLL* values.
const (
	EventRead   Event = 0x1
	EventWrite  Event = 0x4
	EventErr    Event = 0x8
	EventHup    Event = 0x10
	EventRdHup  Event = 0x2000
	eventClosed Event = 0x20 // easygo's private "epoll instance closed" marker
)

// Handler receives readiness for one registration. Both methods run on an
// epoll goroutine and must only hand the work off.
type Handler interface {
	Readable(ev Event)
	Writable(ev Event)
}

// Token names one registration of an fd: the fd and its generation. It is a
// small value; keep it beside the socket it names. The zero Token names no
// registration.
type Token struct {
	FD  int32
	Gen uint32
}
