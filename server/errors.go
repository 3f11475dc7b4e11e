package server

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrServerClosed is returned by Serve and ListenAndServe after
	// Shutdown or Close.
	ErrServerClosed = errors.New("server: closed")

	// ErrClosed is returned by Conn methods once the connection is closing
	// or closed.
	ErrClosed = errors.New("server: connection closed")

	// ErrNotOpen is returned by Hub.Join for a connection that is already
	// closed.
	ErrNotOpen = errors.New("server: connection not open")

	// ErrTooLarge is returned by Conn.Send for a message above
	// Config.MaxMessageBytes.
	ErrTooLarge = errors.New("server: message too large")

	// ErrUnsupported is returned by New off Linux: the engine needs epoll.
	ErrUnsupported = errors.New("server: supported on Linux only (epoll)")
)

// RejectError rejects an upgrade from Config.OnConnect with an HTTP status.
type RejectError struct {
	Status int         // HTTP status, e.g. 401, 403, 404
	Reason string      // short text for the response body and the log
	Header http.Header // extra response fields, e.g. Retry-After with a 503; may be nil
}

// Reject returns a *RejectError for OnConnect.
func Reject(status int, reason string) error {
	return &RejectError{Status: status, Reason: reason}
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("server: rejected with %d %s: %s", e.Status, http.StatusText(e.Status), e.Reason)
}
