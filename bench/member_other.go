//go:build !linux

package bench

import (
	"context"
	"errors"
	"io"
)

var errUnsupported = errors.New("bench: the load generator needs Linux (epoll)")

func newLocal(context.Context, Config, int, int) (member, error)    { return nil, errUnsupported }
func startWorker(context.Context, Config, int, int) (member, error) { return nil, errUnsupported }

// IsWorker reports false off Linux.
func IsWorker() bool { return false }

// RunWorker is unsupported off Linux.
func RunWorker(context.Context, io.Reader, io.Writer) error { return errUnsupported }
