package pubsub

// history is a channel's recent messages, oldest first: a ring that grows
// to the configured size, then overwrites its oldest entry. Its owner's mu
// guards it.
type history struct {
	ring []histEntry
	head int // index of the oldest entry once the ring is full
}

type histEntry struct {
	offset uint64
	at     int64 // unix ns when published
	data   []byte
}

func (h *history) len() int { return len(h.ring) }

// at returns the i-th oldest entry.
func (h *history) at(i int) histEntry { return h.ring[(h.head+i)%len(h.ring)] }

func (h *history) push(e histEntry, size int) {
	if len(h.ring) < size {
		h.ring = append(h.ring, e)
		return
	}
	h.ring[h.head] = e
	h.head = (h.head + 1) % len(h.ring)
}

// expire drops the entries published before cutoff.
func (h *history) expire(cutoff int64) {
	n := 0
	for n < len(h.ring) && h.at(n).at < cutoff {
		n++
	}
	if n == 0 {
		return
	}
	kept := make([]histEntry, 0, len(h.ring)-n)
	for i := n; i < len(h.ring); i++ {
		kept = append(kept, h.at(i))
	}
	h.ring, h.head = kept, 0
}

// after returns the entries with an offset above offset published at or
// after notBefore, oldest first.
func (h *history) after(offset uint64, notBefore int64) []histEntry {
	var out []histEntry
	for i := range len(h.ring) {
		if e := h.at(i); e.offset > offset && e.at >= notBefore {
			out = append(out, e)
		}
	}
	return out
}
