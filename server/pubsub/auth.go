package pubsub

import (
	"fmt"
	"path"

	"github.com/fanout-ws/fanout/server"
)

// Action is what a connection asks to do on a channel.
type Action string

// The actions Allowed checks, each the name of the token claim that
// restricts it.
const (
	ActionSubscribe Action = "subscribe"
	ActionPublish   Action = "publish"
)

// Allowed reports whether c may do action on channel. The engine
// authenticates (server.Auth); channels are authorized here: a token's
// claim named after action lists path.Match patterns of channels (a token
// without that claim may use every channel); a connection without a token
// has Config.AnonymousSubscribe or AnonymousPublish.
func (n *Node) Allowed(c *server.Conn, action Action, channel string) bool {
	claims := c.Claims()
	if claims == nil {
		list := n.cfg.AnonymousSubscribe
		if action == ActionPublish {
			list = n.cfg.AnonymousPublish
		}
		return list == nil || matchAny(list, channel)
	}
	v, ok := claims[string(action)]
	if !ok {
		return true
	}
	var list []string
	vs, _ := v.([]any)
	for _, p := range vs {
		if s, ok := p.(string); ok {
			list = append(list, s)
		}
	}
	return matchAny(list, channel)
}

// Channel tokens: a subscribe may carry a JWT of its own,
// {"op":"subscribe","channel":"private:1","token":"<jwt>"}, checked with
// the connection tokens' keys and rules (server.Auth.Verify: signature,
// "exp", audience, issuer), whose "channel" claim names that channel and
// whose "sub" is the connection's user ("" or absent for an anonymous
// connection: a token issued to a user is of no use to anyone else). Such
// a token authorizes the subscribe in place of Allowed and the backend's
// subscribe hook: the backend signed it beforehand, so private channels
// need no round trip. It is checked when the subscribe arrives; its "exp"
// ends its use, not the subscription. A subscribe from a client to a
// channel of Config.PrivateChannels needs one, or the subscribe hook's
// consent.

// checkChannelToken reports why token does not let c subscribe to
// channel.
func (n *Node) checkChannelToken(c *server.Conn, channel, token string) error {
	claims, err := n.srv.Config().Auth.Verify(token)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrChannelToken, err)
	}
	if ch, _ := claims["channel"].(string); ch != channel {
		return fmt.Errorf("%w: the token's channel %q is not %q", ErrChannelToken, ch, channel)
	}
	if sub, _ := claims["sub"].(string); sub != c.Subject() {
		return fmt.Errorf("%w: the token's sub %q is not the connection's user %q", ErrChannelToken, sub, c.Subject())
	}
	return nil
}

// private reports whether channel needs a channel token (or the subscribe
// hook's consent).
func (n *Node) private(channel string) bool { return matchAny(n.cfg.PrivateChannels, channel) }

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if m, _ := path.Match(p, name); m {
			return true
		}
	}
	return false
}

// warnAnonymousWide warns when srv checks tokens but anonymous
// connections may use every channel: then a restricted token may do less
// than no token.
func (n *Node) warnAnonymousWide(a *server.Auth) {
	if a.Checks() && !a.Required && (n.cfg.AnonymousSubscribe == nil || n.cfg.AnonymousPublish == nil) {
		n.log.Warn("tokens are checked but anonymous clients may subscribe or publish to every channel, more than a restricted token; limit them with Config.AnonymousSubscribe and AnonymousPublish (-anonymous-subscribe, -anonymous-publish) or require tokens")
	}
}
