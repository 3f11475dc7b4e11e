//go:build !linux

package poller

import "net"

// Poller is unavailable off Linux.
type Poller struct{}

// New returns ErrUnsupported off Linux.
func New(n, maxFD int, onError func(error)) (*Poller, error) {
	return nil, ErrUnsupported
}

// Register returns ErrUnsupported off Linux.
func (p *Poller) Register(fd int, h Handler) (Token, error) { return Token{}, ErrUnsupported }

// ArmRead returns ErrUnsupported off Linux.
func (p *Poller) ArmRead(t Token) error { return ErrUnsupported }

// ArmWrite returns ErrUnsupported off Linux.
func (p *Poller) ArmWrite(t Token, h Handler) error { return ErrUnsupported }

// Deregister returns ErrUnsupported off Linux.
func (p *Poller) Deregister(t Token) error { return ErrUnsupported }

// Close returns ErrUnsupported off Linux.
func (p *Poller) Close() error { return ErrUnsupported }

// Detach returns ErrUnsupported off Linux.
func Detach(c net.Conn) (int, error) { c.Close(); return -1, ErrUnsupported }
