package pubsubtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Client is a channel-protocol client on gobwas/ws's client side (a
// library the engine uses only as a server), so the suite pulls no other
// WebSocket client into the module's packages.
type Client struct {
	tb   testing.TB
	conn net.Conn
	rw   io.ReadWriter
}

// Dial connects to url, failing tb if it cannot; the client is closed at
// cleanup and fails a read stuck for 20 s.
func Dial(tb testing.TB, url string) *Client {
	tb.Helper()
	c, err := TryDial(tb, url)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// TryDial connects to url; a refused upgrade is a ws.StatusError.
func TryDial(tb testing.TB, url string) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { conn.Close() })
	c := &Client{tb: tb, conn: conn, rw: conn}
	if br != nil { // bytes the server sent right after the 101
		c.rw = struct {
			*bufio.Reader
			io.Writer
		}{br, conn}
	}
	c.SetDeadline(20 * time.Second)
	return c, nil
}

// SetDeadline fails reads after d from now.
func (c *Client) SetDeadline(d time.Duration) { _ = c.conn.SetReadDeadline(time.Now().Add(d)) }

// Read returns the next message, which must be a JSON text message.
func (c *Client) Read() testutil.Event {
	c.tb.Helper()
	p, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	var e testutil.Event
	if op != ws.OpText || json.Unmarshal(p, &e) != nil {
		c.tb.Fatalf("want a JSON text message, got %v %q", op, p)
	}
	return e
}

// Closed reports whether the server closes the connection before the
// read deadline (reading and dropping what comes before).
func (c *Client) Closed() bool {
	for {
		if _, _, err := wsutil.ReadServerData(c.rw); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// Send sends s as a text message.
func (c *Client) Send(s string) {
	c.tb.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.tb.Fatal(err)
	}
}

// Close closes the connection at once.
func (c *Client) Close() { c.conn.Close() }
