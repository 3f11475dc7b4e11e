package tlsrec

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"sync/atomic"
)

// Record sizes (RFC 8446 5.1, 5.2).
const (
	HeaderLen     = 5
	MaxPlaintext  = 1 << 14            // per record
	MaxCiphertext = MaxPlaintext + 256 // a record's body
	MaxRecord     = HeaderLen + MaxCiphertext
	aeadOverhead  = 16                           // the tag of every suite here
	sealOverhead  = HeaderLen + 1 + aeadOverhead // header, inner content type, tag
)

// Content types (5.1).
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
)

const typeKeyUpdate = 24 // HandshakeType key_update (4)

// Conn is the record layer of one server-side TLS 1.3 connection.
type Conn struct {
	owe atomic.Bool // the peer asked for a KeyUpdate: send ours before the next record (4.6.3)

	// Read half, used by Open alone.
	in half
	hs [5]byte // a KeyUpdate split across records so far
	hn int

	// Write half, used by Seal and SealAlert alone.
	out  half
	kupd bool // send KeyUpdate(update_requested) before the next record
}

// New makes the record layer of a server whose handshake negotiated the
// TLS 1.3 cipher suite id and the application traffic secrets client and
// server (7.1), with no record sent or received under them yet.
func New(id uint16, client, server []byte) (*Conn, error) {
	s := suiteByID(id)
	if s == nil {
		return nil, errors.New("tlsrec: not a TLS 1.3 cipher suite: " + tls.CipherSuiteName(id))
	}
	c := &Conn{}
	if err := c.in.set(s, client); err != nil {
		return nil, err
	}
	if err := c.out.set(s, server); err != nil {
		return nil, err
	}
	return c, nil
}

// RecordLen returns the length of the record at the start of b, header
// included, or 0 if b does not hold its header yet. A header no protected
// record may have is an error: its type is not application_data (5.2) or
// its length is over MaxCiphertext (record_overflow).
func RecordLen(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, nil
	}
	if b[0] != typeApplicationData {
		return 0, errOuterType
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	if n > MaxCiphertext {
		return 0, errOverflow
	}
	return HeaderLen + n, nil
}

// Open decrypts rec, one whole record (RecordLen bytes), in place and
// returns its application data, which aliases rec and may be empty. A
// KeyUpdate is acted on and yields no data; the peer's close_notify is
// ErrCloseNotify, its other alerts a PeerAlert; a record that breaks the
// protocol or does not authenticate is an *Error. After an error the
// connection is over.
func (c *Conn) Open(rec []byte) ([]byte, error) {
	if n, err := RecordLen(rec); err != nil || n != len(rec) {
		if err == nil {
			err = errRecord // a caller's bug, still never accepted
		}
		return nil, err
	}
	if c.in.seq == 1<<64-1 { // 5.3: the sequence number must not wrap
		return nil, errSeqWrap
	}
	var nonce [12]byte
	c.in.nonce(&nonce)
	body := rec[HeaderLen:]
	pt, err := c.in.cipher().Open(body[:0], nonce[:], body, rec[:HeaderLen])
	if err != nil {
		return nil, errBadMAC
	}
	c.in.seq++
	// 5.4: the content type is the last non-zero byte; zeros after it
	// are padding.
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 {
		return nil, errNoType
	}
	typ, pt := pt[i], pt[:i]
	if len(pt) > MaxPlaintext {
		return nil, errOverflow
	}
	if c.hn > 0 && typ != typeHandshake { // 5.1
		return nil, errInterleave
	}
	switch typ {
	case typeApplicationData:
		return pt, nil
	case typeHandshake:
		return nil, c.handshake(pt)
	case typeAlert:
		return nil, alert(pt)
	}
	return nil, errInnerType
}

// handshake takes a post-handshake handshake record. A server that never
// asks for post-handshake authentication can only get KeyUpdate (4.6.3),
// which may arrive in pieces but must end its record (5.1).
func (c *Conn) handshake(pt []byte) error {
	if len(pt) == 0 {
		return errEmpty
	}
	for len(pt) > 0 {
		k := copy(c.hs[c.hn:], pt)
		c.hn += k
		pt = pt[k:]
		if c.hs[0] != typeKeyUpdate {
			return errHandshake
		}
		if c.hn >= 4 && (c.hs[1] != 0 || c.hs[2] != 0 || c.hs[3] != 1) {
			return errKeyUpdate
		}
		if c.hn < len(c.hs) {
			return nil
		}
		if len(pt) > 0 {
			return errSpan
		}
		c.hn = 0
		switch c.hs[4] {
		case 0: // update_not_requested
		case 1: // update_requested: answer before our next record
			c.owe.Store(true)
		default:
			return errRequest
		}
		if err := c.in.update(); err != nil {
			return &Error{AlertUnexpectedMessage, err.Error()}
		}
	}
	return nil
}

// alert reads an alert record (6). TLS 1.3 has no warnings but the
// closure alerts: close_notify ends the stream, user_canceled is followed
// by one, and everything else is an error.
func alert(pt []byte) error {
	if len(pt) == 0 {
		return errEmpty
	}
	if len(pt) != 2 {
		return errAlert
	}
	switch pt[1] {
	case AlertCloseNotify:
		return ErrCloseNotify
	case AlertUserCanceled:
		return nil
	}
	return PeerAlert(pt[1])
}

// Seal appends to dst the records carrying bufs' bytes in order, each with
// up to MaxPlaintext of them (5.1), preceded by a KeyUpdate when one is
// owed or the key reached its limit (5.5). It seals in place: dst needs no
// room of its own, and SealedLen tells how much it grows.
func (c *Conn) Seal(dst []byte, bufs [][]byte) []byte {
	dst = c.keyUpdate(dst)
	i, off := 0, 0
	for {
		for i < len(bufs) && off == len(bufs[i]) {
			i, off = i+1, 0
		}
		if i == len(bufs) {
			return dst
		}
		start := len(dst)
		dst = append(dst, typeApplicationData, 3, 3, 0, 0)
		for n := 0; i < len(bufs) && n < MaxPlaintext; {
			k := min(len(bufs[i])-off, MaxPlaintext-n)
			dst = append(dst, bufs[i][off:off+k]...)
			n, off = n+k, off+k
			if off == len(bufs[i]) {
				i, off = i+1, 0
			}
		}
		dst = c.seal(dst, start, typeApplicationData)
		dst = c.keyUpdate(dst)
	}
}

// SealedLen is how many bytes Seal adds for n bytes of plaintext, not
// counting a KeyUpdate.
func SealedLen(n int) int {
	records := (n + MaxPlaintext - 1) / MaxPlaintext
	return n + records*sealOverhead
}

// SealAlert appends alert desc (6): close_notify as a warning, as every
// implementation sends it, anything else fatal.
func (c *Conn) SealAlert(dst []byte, desc uint8) []byte {
	level := uint8(2)
	if desc == AlertCloseNotify {
		level = 1
	}
	start := len(dst)
	dst = append(dst, typeApplicationData, 3, 3, 0, 0, level, desc)
	return c.seal(dst, start, typeAlert)
}

// DropReadKeys releases the read half's AEAD state while the connection
// is idle; the next Open rebuilds it from the key (about a microsecond).
// Call it where Open is called.
func (c *Conn) DropReadKeys() { c.in.aead = nil }

// DropWriteKeys is DropReadKeys for the write half; call it where Seal is
// called.
func (c *Conn) DropWriteKeys() { c.out.aead = nil }

// RequestKeyUpdate makes the next Seal send KeyUpdate(update_requested),
// so the peer updates its keys too (4.6.3).
func (c *Conn) RequestKeyUpdate() { c.kupd = true }

// keyUpdate appends a KeyUpdate and moves the write half to the next key
// when the peer asked for one, we want one, or the key is used up.
func (c *Conn) keyUpdate(dst []byte) []byte {
	owed := c.owe.Swap(false)
	if !owed && !c.kupd && c.out.seq < c.out.suite.limit {
		return dst
	}
	req := byte(0)
	if c.kupd {
		req = 1
	}
	c.kupd = false
	start := len(dst)
	dst = append(dst, typeApplicationData, 3, 3, 0, 0, typeKeyUpdate, 0, 0, 1, req)
	dst = c.seal(dst, start, typeHandshake)
	if err := c.out.update(); err != nil { // the suite took this secret's length before
		panic("tlsrec: " + err.Error())
	}
	return dst
}

// seal turns dst[start:] (a header, then plaintext) into a record of
// inner type typ, in place.
func (c *Conn) seal(dst []byte, start int, typ byte) []byte {
	dst = append(dst, typ)
	body := start + HeaderLen
	binary.BigEndian.PutUint16(dst[start+3:], uint16(len(dst)-body+aeadOverhead))
	if cap(dst)-len(dst) < aeadOverhead {
		dst = append(dst, make([]byte, aeadOverhead)...)[:len(dst)]
	}
	var nonce [12]byte
	c.out.nonce(&nonce)
	c.out.seq++
	ct := c.out.cipher().Seal(dst[body:body], nonce[:], dst[body:], dst[start:body])
	return dst[:body+len(ct)]
}
