package tlsrec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// suite is what a TLS 1.3 cipher suite (RFC 8446 B.4) means to the record
// layer: its AEAD and the hash of its key schedule.
type suite struct {
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
	// limit is the number of records one key may protect (5.5): 2^24.5
	// full-size records for AES-GCM, rounded down; ChaCha20-Poly1305's
	// 2^64 is bounded by the sequence number instead.
	limit uint64
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func suiteByID(id uint16) *suite {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return &suite{16, sha256.New, newGCM, 1 << 24}
	case tls.TLS_AES_256_GCM_SHA384:
		return &suite{32, sha512.New384, newGCM, 1 << 24}
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return &suite{chacha20poly1305.KeySize, sha256.New, chacha20poly1305.New, 1<<64 - 1}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0) // context: empty
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil { // only for n beyond 255 hash lengths
		panic("tlsrec: " + err.Error())
	}
	return out
}

// half is one direction of a connection: the keys of its current traffic
// secret and the sequence number of its next record (5.3). Its AEAD (for
// AES-GCM about 0.8 KiB of key schedule and GHASH tables) is built from key
// when needed and may be dropped while the connection is idle.
type half struct {
	aead   cipher.AEAD // nil when dropped
	suite  *suite
	secret []byte
	key    []byte
	seq    uint64
	iv     [12]byte
}

// set installs the key and IV of secret (7.3) and restarts the sequence.
func (h *half) set(s *suite, secret []byte) error {
	key := expandLabel(s.hash, secret, "key", s.keyLen)
	aead, err := s.aead(key)
	if err != nil {
		return err
	}
	h.aead, h.suite, h.secret, h.key, h.seq = aead, s, secret, key, 0
	copy(h.iv[:], expandLabel(s.hash, secret, "iv", len(h.iv)))
	return nil
}

// cipher returns the AEAD, rebuilt if it was dropped.
func (h *half) cipher() cipher.AEAD {
	if h.aead == nil {
		aead, err := h.suite.aead(h.key)
		if err != nil { // set built one from this key before
			panic("tlsrec: " + err.Error())
		}
		h.aead = aead
	}
	return h.aead
}

// update moves to the next generation of traffic secret (7.2), as a
// KeyUpdate asks.
func (h *half) update() error {
	return h.set(h.suite, expandLabel(h.suite.hash, h.secret, "traffic upd", h.suite.hash().Size()))
}

// nonce is the per-record nonce (5.3): the IV XORed with the sequence
// number, left-padded to its length.
func (h *half) nonce(n *[12]byte) {
	*n = h.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], h.seq)
	for i, b := range seq {
		n[4+i] ^= b
	}
}
