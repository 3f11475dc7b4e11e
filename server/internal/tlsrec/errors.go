package tlsrec

import (
	"errors"
	"fmt"
)

// Alert descriptions (RFC 8446 6) this package sends or names.
const (
	AlertCloseNotify       uint8 = 0
	AlertUnexpectedMessage uint8 = 10
	AlertBadRecordMAC      uint8 = 20
	AlertRecordOverflow    uint8 = 22
	AlertIllegalParameter  uint8 = 47
	AlertDecodeError       uint8 = 50
	AlertInternalError     uint8 = 80
	AlertUserCanceled      uint8 = 90
)

// ErrCloseNotify is Open's error for the peer's close_notify alert (6.1):
// the peer sends no more data.
var ErrCloseNotify = errors.New("tlsrec: peer sent close_notify")

// Error is a record the peer sent that breaks RFC 8446: the connection
// must end, with Alert sent to the peer if it can be (SealAlert).
type Error struct {
	Alert  uint8
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("tlsrec: %s (alert %d)", e.Reason, e.Alert) }

// PeerAlert is Open's error for an error alert from the peer (6.2): the
// connection is over and nothing is sent back.
type PeerAlert uint8

func (a PeerAlert) Error() string { return fmt.Sprintf("tlsrec: peer sent alert %d", uint8(a)) }

var (
	errOverflow   = &Error{AlertRecordOverflow, "record too long"}
	errOuterType  = &Error{AlertUnexpectedMessage, "unprotected record after the handshake"}
	errBadMAC     = &Error{AlertBadRecordMAC, "record does not authenticate"}
	errNoType     = &Error{AlertUnexpectedMessage, "record without a content type"}
	errInnerType  = &Error{AlertUnexpectedMessage, "unexpected content type"}
	errEmpty      = &Error{AlertUnexpectedMessage, "empty handshake or alert record"}
	errInterleave = &Error{AlertUnexpectedMessage, "handshake message interleaved with other records"}
	errHandshake  = &Error{AlertUnexpectedMessage, "handshake message other than KeyUpdate after the handshake"}
	errKeyUpdate  = &Error{AlertDecodeError, "malformed KeyUpdate"}
	errRequest    = &Error{AlertIllegalParameter, "KeyUpdate request_update out of range"}
	errSpan       = &Error{AlertUnexpectedMessage, "data after a KeyUpdate in its record"}
	errAlert      = &Error{AlertDecodeError, "malformed alert"}
	errSeqWrap    = &Error{AlertBadRecordMAC, "sequence number exhausted"}
	errRecord     = &Error{AlertInternalError, "Open takes one whole record"}
)
