package server

import (
	"net/http"
	"path"
	"strings"
)

// originAllowed reports whether a browser's Origin may open a connection:
// any when no patterns are configured; otherwise origin must match one
// pattern (case-insensitive, path.Match syntax, e.g. "https://*.example.com").
// Requests without an Origin header come from non-browser clients, which
// cross-site WebSocket hijacking cannot drive, and are allowed.
func originAllowed(patterns []string, origin string) bool {
	if len(patterns) == 0 || origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), origin); ok {
			return true
		}
	}
	return false
}

// errOrigin rejects an upgrade from a disallowed origin.
var errOrigin = &RejectError{Status: http.StatusForbidden, Reason: "origin not allowed"}
