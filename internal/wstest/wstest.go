// Package wstest dials real gorilla/websocket clients for tests and reads
// the channel protocol's events from them. Only _test.go files import it,
// so gorilla stays out of the module's packages.
package wstest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/gorilla/websocket"
)

// DialGorilla opens a gorilla/websocket client to url, closed at cleanup,
// with a read deadline that fails a stuck test rather than hanging it.
func DialGorilla(tb testing.TB, url string) *websocket.Conn {
	tb.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	tb.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return c
}

// ReadEvent reads the next message from c, which must be a JSON text
// message.
func ReadEvent(tb testing.TB, c *websocket.Conn) testutil.Event {
	tb.Helper()
	op, p, err := c.ReadMessage()
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	var e testutil.Event
	if op != websocket.TextMessage || json.Unmarshal(p, &e) != nil {
		tb.Fatalf("want a JSON text message, got %d %q", op, p)
	}
	return e
}

// SendJSON sends s as a text message.
func SendJSON(tb testing.TB, c *websocket.Conn, s string) {
	tb.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		tb.Fatal(err)
	}
}
