package pubsub

import "unsafe"

// histEntry is one kept message. It is on two lists at once: every kept
// message of the broker, oldest first (for the byte budget and expiry),
// and its channel's (for reads and the per-channel size).
type histEntry struct {
	ch     *memChannel
	offset uint64
	at     int64 // unix ns when published
	data   []byte
	link   [2]links // by list: allEntries, chanEntries
}

type links struct{ prev, next *histEntry }

// The two lists an entry is on.
const (
	allEntries  = 0
	chanEntries = 1
)

// histEntryOverhead is what an entry costs beside its data: the budget
// counts real memory, so a flood of empty messages is bounded too.
const histEntryOverhead = int64(unsafe.Sizeof(histEntry{}))

// cost is the memory e holds.
func (e *histEntry) cost() int64 { return histEntryOverhead + int64(cap(e.data)) }

// entryList is a doubly linked list of entries through their link[k].
type entryList struct {
	head, tail *histEntry
	len        int
}

func (l *entryList) push(e *histEntry, k int) {
	e.link[k] = links{prev: l.tail}
	if l.tail != nil {
		l.tail.link[k].next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.len++
}

func (l *entryList) remove(e *histEntry, k int) {
	p, n := e.link[k].prev, e.link[k].next
	if p != nil {
		p.link[k].next = n
	} else {
		l.head = n
	}
	if n != nil {
		n.link[k].prev = p
	} else {
		l.tail = p
	}
	e.link[k] = links{}
	l.len--
}

// history is every channel's kept messages within a byte budget. Its
// owner's lock guards it.
type history struct {
	all      entryList
	bytes    int64 // cost of every entry in all
	maxBytes int64
	size     int // entries per channel
}

// push keeps e, then drops the oldest entries of its channel beyond size
// and the oldest of all beyond the byte budget.
func (h *history) push(e *histEntry) {
	h.all.push(e, allEntries)
	e.ch.hist.push(e, chanEntries)
	h.bytes += e.cost()
	for e.ch.hist.len > h.size {
		h.drop(e.ch.hist.head)
	}
	for h.bytes > h.maxBytes {
		h.drop(h.all.head)
	}
}

func (h *history) drop(e *histEntry) {
	h.all.remove(e, allEntries)
	e.ch.hist.remove(e, chanEntries)
	h.bytes -= e.cost()
}

// expire drops the entries published before cutoff.
func (h *history) expire(cutoff int64) {
	for h.all.head != nil && h.all.head.at < cutoff {
		h.drop(h.all.head)
	}
}

// afterOffset returns up to limit of l's entries with an offset above offset
// published at or after notBefore, oldest first.
func afterOffset(l *entryList, offset uint64, notBefore int64, limit int) []*histEntry {
	var out []*histEntry
	for e := l.head; e != nil && len(out) < limit; e = e.link[chanEntries].next {
		if e.offset > offset && e.at >= notBefore {
			out = append(out, e)
		}
	}
	return out
}
