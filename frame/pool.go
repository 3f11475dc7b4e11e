package frame

import "sync"

// Buffers for payloads that do not arrive whole. Gathered data messages
// take a buffer from a size class; past the largest class they grow as
// bytes arrive and go to a pool of large buffers of any capacity. Split
// control frames take a buffer of MaxControlPayload bytes. Every buffer
// goes back to its pool when the message it holds has been delivered, so an
// idle connection holds none.
const (
	smallBuf  = 4 << 10
	mediumBuf = 64 << 10
)

var (
	smallPool, mediumPool, largePool sync.Pool
	controlPool                      sync.Pool
)

// getBuf returns an empty buffer with room for at least n bytes.
func getBuf(n int) *[]byte {
	switch {
	case n <= smallBuf:
		return getClass(&smallPool, smallBuf)
	case n <= mediumBuf:
		return getClass(&mediumPool, mediumBuf)
	}
	if b, ok := largePool.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	// A pooled buffer too small for n is left to the garbage collector:
	// putting it back would only have the next Get find it again.
	b := make([]byte, 0, n)
	return &b
}

func getClass(p *sync.Pool, size int) *[]byte {
	if b, ok := p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, size)
	return &b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b *[]byte) {
	*b = (*b)[:0]
	switch c := cap(*b); {
	case c == smallBuf:
		smallPool.Put(b)
	case c == mediumBuf:
		mediumPool.Put(b)
	case c > mediumBuf:
		largePool.Put(b)
	}
}

func getControl() *[]byte {
	return getClass(&controlPool, MaxControlPayload)
}

func putControl(b *[]byte) {
	*b = (*b)[:0]
	controlPool.Put(b)
}
