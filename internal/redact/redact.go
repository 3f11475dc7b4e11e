// Package redact hides secrets in what the module logs, serves or returns
// as an error: the one place that knows where a URL keeps its password.
package redact

import (
	"errors"
	"net/url"
	"strings"
)

// URL returns raw with the password of its user information replaced by
// "xxxxx", as url.URL.Redacted does, also when raw does not parse as a URL
// (a mistyped flag): then everything between "scheme://user:" and the last
// "@" is hidden. Anything else is returned unchanged.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
		return raw
	}
	start := strings.Index(raw, "://") + len("://")
	if start < len("://") {
		return raw
	}
	at := strings.LastIndexByte(raw[start:], '@')
	colon := strings.IndexByte(raw[start:], ':')
	if at < 0 || colon < 0 || colon > at {
		return raw
	}
	return raw[:start+colon+1] + "xxxxx" + raw[start+at:]
}

// Error redacts, as URL does, the URL that a *url.Error in err's chain
// quotes: url.Parse's errors carry the whole URL, password included. Call
// it before wrapping err: fmt.Errorf copies the text it wraps.
func Error(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = URL(ue.URL)
	}
	return err
}
