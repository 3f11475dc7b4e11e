package frame

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// CloseCode is a close frame's status code (RFC 6455 section 7.4).
type CloseCode uint16

// Close codes of RFC 6455 section 7.4.1 and the IANA registry.
const (
	CloseNormal             CloseCode = 1000
	CloseGoingAway          CloseCode = 1001
	CloseProtocolError      CloseCode = 1002
	CloseUnsupportedData    CloseCode = 1003
	CloseNoStatus           CloseCode = 1005 // never on the wire: no code was given
	CloseAbnormal           CloseCode = 1006 // never on the wire: no close frame at all
	CloseInvalidPayload     CloseCode = 1007
	ClosePolicyViolation    CloseCode = 1008
	CloseMessageTooBig      CloseCode = 1009
	CloseMandatoryExtension CloseCode = 1010
	CloseInternalError      CloseCode = 1011
	CloseServiceRestart     CloseCode = 1012
	CloseTryAgainLater      CloseCode = 1013
)

var closeNames = map[CloseCode]string{
	CloseNormal: "normal", CloseGoingAway: "going away", CloseProtocolError: "protocol error",
	CloseUnsupportedData: "unsupported data", CloseNoStatus: "no status", CloseAbnormal: "abnormal closure",
	CloseInvalidPayload: "invalid payload", ClosePolicyViolation: "policy violation",
	CloseMessageTooBig: "message too big", CloseMandatoryExtension: "mandatory extension",
	CloseInternalError: "internal error", CloseServiceRestart: "service restart", CloseTryAgainLater: "try again later",
}

func (c CloseCode) String() string {
	if s, ok := closeNames[c]; ok {
		return strconv.Itoa(int(c)) + " " + s
	}
	return strconv.Itoa(int(c))
}

// ValidOnWire reports whether c may appear in a close frame (section 7.4):
// the defined codes except 1004-1006 and 1015, registered 1012-1014, and the
// application range 3000-4999.
func (c CloseCode) ValidOnWire() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// ParseClosePayload splits a close frame's payload (section 5.5.1). An empty
// payload gives CloseNoStatus. reason aliases p.
func ParseClosePayload(p []byte) (code CloseCode, reason []byte, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, nil, nil
	case len(p) == 1:
		return 0, nil, ErrCloseLength
	}
	code = CloseCode(binary.BigEndian.Uint16(p))
	if !code.ValidOnWire() {
		return code, nil, ErrInvalidCloseCode
	}
	if !utf8.Valid(p[2:]) {
		return code, nil, ErrInvalidUTF8
	}
	return code, p[2:], nil
}

// AppendClosePayload appends a close payload for code and reason. Code
// CloseNoStatus gives an empty payload; reason is cut at a UTF-8 boundary so
// the payload fits a control frame.
func AppendClosePayload(dst []byte, code CloseCode, reason string) []byte {
	if code == CloseNoStatus {
		return dst
	}
	if max := MaxControlPayload - 2; len(reason) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
