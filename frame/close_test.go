package frame

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCloseCode_ValidOnWire(t *testing.T) {
	t.Parallel()
	valid := func(c int) bool {
		return c >= 1000 && c <= 1003 || c >= 1007 && c <= 1014 || c >= 3000 && c <= 4999
	}
	for c := range 1 << 16 {
		if got := CloseCode(c).ValidOnWire(); got != valid(c) {
			t.Fatalf("%d: ValidOnWire %v", c, got)
		}
	}
	for _, tc := range []struct {
		name  string
		code  CloseCode
		valid bool
	}{
		{"0", 0, false}, {"999", 999, false}, {"1000", 1000, true}, {"1003", 1003, true}, {"1004 reserved", 1004, false},
		{"1005 no status", CloseNoStatus, false}, {"1006 abnormal", CloseAbnormal, false}, {"1007", 1007, true},
		{"1011", 1011, true}, {"1012 iana", 1012, true}, {"1014 iana", 1014, true}, {"1015 tls", 1015, false},
		{"1016", 1016, false}, {"2999", 2999, false}, {"3000", 3000, true}, {"4999", 4999, true}, {"5000", 5000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.code.ValidOnWire(); got != tc.valid {
				t.Fatalf("ValidOnWire %v, want %v", got, tc.valid)
			}
		})
	}
}

func TestParseClosePayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		in     []byte
		code   CloseCode
		reason string
		err    error
	}{
		{name: "empty", in: nil, code: CloseNoStatus},
		{name: "code only", in: bits("00000011 11101000 [1000]"), code: CloseNormal},
		{name: "code and reason", in: bits(`00000011 11101001 [1001] "bye €"`), code: CloseGoingAway, reason: "bye €"},
		{name: "application code", in: bits(`00001111 10100000 [4000] "app"`), code: 4000, reason: "app"},
		{name: "one byte", in: bits("00000011"), err: ErrCloseLength},
		{name: "1005 on the wire", in: bits("00000011 11101101"), err: ErrInvalidCloseCode},
		{name: "1006 on the wire", in: bits("00000011 11101110"), err: ErrInvalidCloseCode},
		{name: "999", in: bits("00000011 11100111"), err: ErrInvalidCloseCode},
		{name: "reason not utf8", in: bits("00000011 11101000 | 11000000 10101111 [overlong /]"), err: ErrInvalidUTF8},
		{name: "reason cut mid-rune", in: bits("00000011 11101000 | 11100010 10000010 [€ without its last byte]"), err: ErrInvalidUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClosePayload(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				if reason != nil {
					t.Fatalf("reason %q with an error", reason)
				}
				return
			}
			if code != tc.code || string(reason) != tc.reason {
				t.Fatalf("got %v %q, want %v %q", code, reason, tc.code, tc.reason)
			}
		})
	}
}

func TestAppendClosePayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		code   CloseCode
		reason string
		want   string // reason after the cut
	}{
		{"no reason", CloseNormal, "", ""},
		{"short", CloseGoingAway, "shutting down", "shutting down"},
		{"exactly 123", CloseGoingAway, strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"ascii cut", CloseGoingAway, strings.Repeat("a", 200), strings.Repeat("a", 123)},
		{"3-byte runes cut at a boundary", CloseGoingAway, strings.Repeat("€", 100), strings.Repeat("€", 41)},
		{"4-byte runes cut at a boundary", CloseGoingAway, "a" + strings.Repeat("𝄞", 40), "a" + strings.Repeat("𝄞", 30)},
		{"no status", CloseNoStatus, "ignored", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := AppendClosePayload([]byte("pre"), tc.code, tc.reason)[3:]
			if len(p) > MaxControlPayload {
				t.Fatalf("%d bytes", len(p))
			}
			if tc.code == CloseNoStatus {
				if len(p) != 0 {
					t.Fatalf("payload %q, want empty", p)
				}
				return
			}
			code, reason, err := ParseClosePayload(p)
			if err != nil || code != tc.code || string(reason) != tc.want || !utf8.Valid(reason) {
				t.Fatalf("got %v %q %v, want %v %q", code, reason, err, tc.code, tc.want)
			}
		})
	}
}

func TestCloseCode_String(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code CloseCode
		want string
	}{
		{CloseNormal, "1000 normal"}, {CloseGoingAway, "1001 going away"}, {CloseProtocolError, "1002 protocol error"},
		{CloseUnsupportedData, "1003 unsupported data"}, {CloseNoStatus, "1005 no status"},
		{CloseAbnormal, "1006 abnormal closure"}, {CloseInvalidPayload, "1007 invalid payload"},
		{ClosePolicyViolation, "1008 policy violation"}, {CloseMessageTooBig, "1009 message too big"},
		{CloseMandatoryExtension, "1010 mandatory extension"}, {CloseInternalError, "1011 internal error"},
		{CloseServiceRestart, "1012 service restart"}, {CloseTryAgainLater, "1013 try again later"}, {4000, "4000"},
	} {
		t.Run(strconv.Itoa(int(tc.code)), func(t *testing.T) {
			if got := tc.code.String(); got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
		})
	}
}
