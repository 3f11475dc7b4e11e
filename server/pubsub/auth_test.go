package pubsub

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// Channels are authorized here, the engine only authenticates: anonymous
// connections get only their explicit permissions, a token's subscribe and
// publish claims restrict it (no claim: every channel), and wide anonymous
// access while tokens are checked is warned about at Start.
func TestHostile_AnonymousPermissions(t *testing.T) {
	t.Parallel()
	secret := []byte("pubsub-test-secret")
	logs := &testutil.SyncBuffer{}
	s := runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: secret}},
		Config{AnonymousSubscribe: []string{"public/*"}, AnonymousPublish: []string{}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if strings.Contains(logs.String(), "anonymous clients may") {
		t.Fatal("warned although anonymous permissions are explicit")
	}
	token := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return "&token=" + tok
	}
	bob := token(jwt.MapClaims{"sub": "bob", "publish": []string{"chat.*"}})
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"anonymous, public channel", "channel=public/news", 101},
		{"anonymous, other channel", "channel=private", 403},
		{"token without a subscribe claim", "channel=private" + bob, 101},
		{"token with a subscribe claim", "channel=private" + token(jwt.MapClaims{"subscribe": []string{"public/*"}}), 403},
	} {
		c, resp, _ := websocket.DefaultDialer.Dial("ws://"+s.addr+"/ws?"+tc.query, nil)
		if c != nil {
			c.Close()
		}
		if resp == nil || resp.StatusCode != tc.want && !(tc.want == 101 && resp.StatusCode == http.StatusSwitchingProtocols) {
			t.Errorf("%s: %+v, want %d", tc.name, resp, tc.want)
		}
	}
	for _, tc := range []struct{ name, query, channel, want string }{
		{"anonymous", "", "public/news", "error"},
		{"bob, allowed", bob, "chat.1", "published"},
		{"bob, other channel", bob, "news", "error"},
	} {
		c := dialGorilla(t, "ws://"+s.addr+"/ws?channel=public/x"+tc.query)
		readEvent(t, c)
		sendJSON(t, c, `{"op":"publish","channel":"`+tc.channel+`","data":1}`)
		if e := readEvent(t, c); e.Type != tc.want || tc.want == "error" && !strings.Contains(e.Reason, "not allowed") {
			t.Errorf("%s publishing to %s: %+v, want %s", tc.name, tc.channel, e, tc.want)
		}
	}

	wide := &testutil.SyncBuffer{}
	runChannels(t, server.Config{Auth: &server.Auth{HMACSecret: secret}}, Config{Logger: slog.New(slog.NewTextHandler(wide, nil))})
	if !strings.Contains(wide.String(), "anonymous clients may subscribe or publish to every channel") {
		t.Fatalf("no warning for wide anonymous access; logs:\n%s", wide.String())
	}
}
