package frame

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// CloseCode is a close frame's status code (RFC 6455 section 7.4).
type CloseCode uint16

// Close codes of RFC 6455 section 7.4.1 and the IANA registry (section
// 11.7).
const (
	CloseNormal             CloseCode = 1000
	CloseGoingAway          CloseCode = 1001
	CloseProtocolError      CloseCode = 1002
	CloseUnsupportedData    CloseCode = 1003
	CloseNoStatus           CloseCode = 1005 // never on the wire: the close frame had no payload
	CloseAbnormal           CloseCode = 1006 // never on the wire: the connection ended without a close frame
	CloseInvalidPayload     CloseCode = 1007
	ClosePolicyViolation    CloseCode = 1008
	CloseMessageTooBig      CloseCode = 1009
	CloseMandatoryExtension CloseCode = 1010
	CloseInternalError      CloseCode = 1011
	CloseServiceRestart     CloseCode = 1012
	CloseTryAgainLater      CloseCode = 1013
)

// String returns the code's number and, for a known code, its name, as in
// "1001 going away".
func (c CloseCode) String() string {
	name := ""
	switch c {
	case CloseNormal:
		name = "normal"
	case CloseGoingAway:
		name = "going away"
	case CloseProtocolError:
		name = "protocol error"
	case CloseUnsupportedData:
		name = "unsupported data"
	case CloseNoStatus:
		name = "no status"
	case CloseAbnormal:
		name = "abnormal closure"
	case CloseInvalidPayload:
		name = "invalid payload"
	case ClosePolicyViolation:
		name = "policy violation"
	case CloseMessageTooBig:
		name = "message too big"
	case CloseMandatoryExtension:
		name = "mandatory extension"
	case CloseInternalError:
		name = "internal error"
	case CloseServiceRestart:
		name = "service restart"
	case CloseTryAgainLater:
		name = "try again later"
	default:
		return strconv.Itoa(int(c))
	}
	return strconv.Itoa(int(c)) + " " + name
}

// ValidOnWire reports whether c may appear in a close frame (section 7.4):
// 1000-1003 and 1007-1011 from section 7.4.1, 1012-1014 registered with IANA
// since, and the range 3000-4999 for libraries and applications. 1004 is
// reserved, 1005, 1006 and 1015 must never be sent, and everything else is
// unassigned.
func (c CloseCode) ValidOnWire() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// ParseClosePayload splits the payload of a close frame into its status
// code and reason (section 5.5.1). An empty payload gives CloseNoStatus and
// no error. A payload of one byte gives ErrCloseLength, a code that is not
// ValidOnWire gives ErrInvalidCloseCode (1002), and a reason that is not
// UTF-8 gives ErrInvalidUTF8 (1007). reason aliases p.
func ParseClosePayload(p []byte) (code CloseCode, reason []byte, err error) {
	code, reason, perr := parseClose(p)
	if perr != nil {
		return code, nil, perr
	}
	return code, reason, nil
}

func parseClose(p []byte) (CloseCode, []byte, *ProtocolError) {
	switch len(p) {
	case 0:
		return CloseNoStatus, nil, nil
	case 1:
		return 0, nil, ErrCloseLength
	}
	code := CloseCode(binary.BigEndian.Uint16(p))
	if !code.ValidOnWire() {
		return code, nil, ErrInvalidCloseCode
	}
	if !utf8.Valid(p[2:]) {
		return code, nil, ErrInvalidUTF8
	}
	return code, p[2:], nil
}

// AppendClosePayload appends the payload of a close frame with code and
// reason to dst (section 5.5.1). Code CloseNoStatus appends nothing, which
// is how a close frame says it has no code. The reason is cut at a UTF-8
// boundary so the payload fits in MaxControlPayload bytes. The caller
// chooses a code that is ValidOnWire.
func AppendClosePayload(dst []byte, code CloseCode, reason string) []byte {
	if code == CloseNoStatus {
		return dst
	}
	if limit := MaxControlPayload - 2; len(reason) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
