package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuth_Tokens(t *testing.T) {
	t.Parallel()
	secret := []byte("test-secret-not-for-production")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	valid := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	expired := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}

	subjects := make(chan string, 16)
	hmacCfg := Config{Auth: &Auth{HMACSecret: secret, Required: true}, OnConnect: func(c *Conn, _ *Request) error {
		subjects <- c.Subject()
		return nil
	}}
	_, hmacAddr := runServer(t, hmacCfg)
	good := sign(t, jwt.SigningMethodHS256, secret, valid)
	for _, tc := range []struct {
		name   string
		header http.Header
		query  string
		status int
	}{
		{"bearer header", http.Header{"Authorization": {"Bearer " + good}}, "", 101},
		{"query parameter", nil, "?token=" + url.QueryEscape(good), 101},
		{"subprotocol entry", http.Header{"Sec-WebSocket-Protocol": {"fanout, bearer." + good}}, "", 101},
		{"missing", nil, "", 401},
		{"malformed", http.Header{"Authorization": {"Bearer not.a.jwt"}}, "", 401},
		{"expired", http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodHS256, secret, expired)}}, "", 401},
		{"wrong secret", http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodHS256, []byte("other"), valid)}}, "", 401},
		{"no expiry", http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "x"})}}, "", 401},
		{"alg none", http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)}}, "", 401},
		{"RS256 not configured", http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, valid)}}, "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+hmacAddr+"/echo"+tc.query, tc.header)
			if c != nil {
				c.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 101 {
				if sub := <-subjects; sub != "alice" {
					t.Fatalf("Subject %q, want alice", sub)
				}
			}
		})
	}

	for _, kc := range []struct {
		name   string
		method jwt.SigningMethod
		priv   any
		pub    any
	}{
		{"RS256", jwt.SigningMethodRS256, rsaKey, &rsaKey.PublicKey},
		{"ES256", jwt.SigningMethodES256, ecKey, &ecKey.PublicKey},
	} {
		t.Run(kc.name, func(t *testing.T) {
			_, addr := runServer(t, Config{Auth: &Auth{PublicKey: kc.pub, Required: true}})
			h := http.Header{"Authorization": {"Bearer " + sign(t, kc.method, kc.priv, valid)}}
			c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", h)
			if err != nil {
				t.Fatalf("valid %s token refused: %v", kc.name, err)
			}
			c.Close()
			forged := http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodHS256, []byte("guess"), valid)}}
			if _, resp, _ := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", forged); resp == nil || resp.StatusCode != 401 {
				t.Fatalf("HS256 token accepted by a %s-only server", kc.name)
			}
		})
	}
}

// Without Required, no token means anonymous (no claims); a token's
// claims reach the application (package pubsub authorizes channels with
// them).
func TestAuth_AnonymousAndClaims(t *testing.T) {
	t.Parallel()
	secret := []byte("s")
	type result struct {
		sub     string
		publish any
		anyone  bool
	}
	got := make(chan result, 2)
	_, addr := runServer(t, Config{Auth: &Auth{HMACSecret: secret}, OnConnect: func(c *Conn, _ *Request) error {
		got <- result{c.Subject(), c.Claims()["publish"], c.Claims() == nil}
		return nil
	}})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := <-got; r.sub != "" || !r.anyone {
		t.Fatalf("anonymous: %+v", r)
	}
	tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix(), "publish": []string{"chat.*"}})
	c, _, err = websocket.DefaultDialer.Dial("ws://"+addr+"/echo?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := <-got; r.sub != "bob" || r.anyone || fmt.Sprint(r.publish) != "[chat.*]" {
		t.Fatalf("bob: %+v, want his claims", r)
	}
}
