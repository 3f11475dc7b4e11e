package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Auth configures JWT authentication at the handshake. The token comes
// from "Authorization: Bearer <jwt>", the "token" query parameter, or a
// Sec-WebSocket-Protocol entry "bearer.<jwt>" (browsers cannot set headers;
// offer it beside a real subprotocol such as "fanout"). A missing, malformed,
// expired or wrongly signed token gets 401 before the upgrade. A token must
// carry "exp": one without it is refused, and a connection is closed with
// 1008 "token expired" when its token expires (the client reconnects with a
// fresh one).
type Auth struct {
	// HMACSecret verifies HS256 tokens. Empty disables HS256.
	HMACSecret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey) or ES256 (*ecdsa.PublicKey)
	// tokens. Nil disables them.
	PublicKey crypto.PublicKey
	// Required refuses connections without a token. Otherwise they are
	// anonymous: Conn.Subject is "" and Conn.Claims nil (package pubsub
	// decides what anonymous connections may do on channels).
	Required bool
	// Audience, when set, must be one of the token's "aud" values.
	Audience string
	// Issuer, when set, must be the token's "iss".
	Issuer string
}

// Checks reports whether a verifies tokens (a key is set); when it does
// not, every connection is anonymous.
func (a *Auth) Checks() bool { return a != nil && (len(a.HMACSecret) > 0 || a.PublicKey != nil) }

// errUnauthorized is the 401 every authentication failure gets; the reason
// goes to the log only.
var errUnauthorized = &RejectError{Status: http.StatusUnauthorized, Reason: "missing or invalid token"}

// authenticate verifies r's token. It returns the claims (nil for an
// anonymous connection) or errUnauthorized wrapping the cause.
func (a *Auth) authenticate(r *Request) (jwt.MapClaims, error) {
	raw := bearerToken(r)
	if raw == "" {
		if a.Required {
			return nil, fmt.Errorf("%w: no token", errUnauthorized)
		}
		return nil, nil
	}
	claims, err := a.Verify(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnauthorized, err)
	}
	return claims, nil
}

// Verify checks a token as the handshake does (signature, "exp", audience,
// issuer) and returns its claims: for a token refreshed over an open
// connection (Conn.SetClaims).
func (a *Auth) Verify(raw string) (jwt.MapClaims, error) {
	if !a.Checks() {
		return nil, errors.New("server: tokens are not checked here")
	}
	var methods []string
	if len(a.HMACSecret) > 0 {
		methods = append(methods, "HS256")
	}
	switch a.PublicKey.(type) {
	case *rsa.PublicKey:
		methods = append(methods, "RS256")
	case *ecdsa.PublicKey:
		methods = append(methods, "ES256")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() == "HS256" {
			return a.HMACSecret, nil
		}
		return a.PublicKey, nil
	}, a.parserOptions(methods)...)
	if err != nil {
		return nil, err
	}
	return claims, nil
}

func (a *Auth) parserOptions(methods []string) []jwt.ParserOption {
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired()}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	return opts
}

// expiry is when claims' token expires, in Server.now units (0: never;
// authenticate requires "exp", so only a hook's claims lack it).
func expiry(claims jwt.MapClaims) int64 {
	if t, err := claims.GetExpirationTime(); err == nil && t != nil {
		return t.UnixNano()
	}
	return 0
}

// bearerToken finds the token in the header, the query or the offered
// subprotocols, in that order.
func bearerToken(r *Request) string {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	if t := r.Query().Get("token"); t != "" {
		return t
	}
	for _, p := range r.Protocols {
		if t, ok := strings.CutPrefix(p, "bearer."); ok {
			return t
		}
	}
	return ""
}

// Subject is the authenticated identity (the token's "sub"), or "" for an
// anonymous connection.
func (c *Conn) Subject() string {
	sub, _ := c.Claims()["sub"].(string)
	return sub
}

// Claims are the verified token's claims, or nil for an anonymous
// connection: what an application (package pubsub's channel permissions)
// authorizes with. Do not modify them.
func (c *Conn) Claims() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.app.claims
}

// SetClaims replaces c's claims, verified by the caller (Auth.Verify, or
// an application's backend), and its expiry with their "exp" (none
// without it): a token refreshed without reconnecting.
func (c *Conn) SetClaims(claims map[string]any) {
	c.mu.Lock()
	c.app.claims = claims
	c.life.setExpiry(expiry(claims))
	c.mu.Unlock()
}

// SetExpiry moves the moment c is closed with 1008 "token expired" to t
// (the zero Time: never), keeping its claims: a session an application's
// backend extends.
func (c *Conn) SetExpiry(t time.Time) {
	var at int64
	if !t.IsZero() {
		at = t.UnixNano()
	}
	c.mu.Lock()
	c.life.setExpiry(at)
	c.mu.Unlock()
}

// Expiry is when c's token or session expires, or the zero Time for never.
func (c *Conn) Expiry() time.Time {
	c.mu.Lock()
	at := c.life.expires
	c.mu.Unlock()
	if at == 0 {
		return time.Time{}
	}
	return time.Unix(0, at)
}
