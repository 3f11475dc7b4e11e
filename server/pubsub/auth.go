package pubsub

import (
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
