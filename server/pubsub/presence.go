package pubsub

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/fanout-ws/fanout/server"
)

// Presence: the members of the channels named by Config.PresenceChannels,
// across every node, with no broker code of its own: it rides the node bus
// (bus.go). Each node owns its local members (a client that joined the
// channel's hub here) and announces each change on the bus, in order
// (presence.join, presence.leave). Notes can be lost, so each node also
// repeats its whole state every heartbeat (PresenceExpiry/3): a round of
// presence.state notes, each a batch of channels (a big channel split in
// parts), closed by a presence.beat that counts them. A node that heard a
// whole round drops what that round left out; one that heard nothing from
// a node for PresenceExpiry drops all of that node's members (it died),
// and one that closes after its server says so (presence.bye). A node
// that starts, or whose broker reconnected, asks for everyone's round at
// once (presence.sync).
//
// Subscribers of a presence channel are told each change of its members
// as {"type":"join"|"leave","channel":..,"member":..}, in the order the
// changes were made to this node's view: a member lives on one node, whose
// notes arrive in order, so its join comes before its leave everywhere.
//
// Lock order: registry.mu, then a channel's mu, then presence.mu; under
// presence.mu only hub broadcasts and bus sends (neither blocks).

// Member is one client of a presence channel: its id (unique across
// nodes), its user (the token's sub, "" when anonymous) and the token's
// info claim when it is a JSON object of at most maxInfoBytes.
type Member struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// PresenceStats counts a presence channel's members.
type PresenceStats struct {
	Channel string `json:"channel"`
	Clients int    `json:"clients"` // members
	Users   int    `json:"users"`   // distinct non-empty users among them
}

// Defaults of the presence fields of Config.
const (
	DefaultPresenceMaxMembers = 1000
	DefaultPresenceExpiry     = 15 * time.Second
)

// maxInfoBytes bounds a member's info: a larger info claim is left out.
const maxInfoBytes = 1 << 10

// stateNoteBytes is where a presence.state note stops taking members,
// leaving room under maxNoteBytes for the envelope and one more member.
const stateNoteBytes = maxNoteBytes / 2

// Bus note kinds.
const (
	kindJoin  = "presence.join"
	kindLeave = "presence.leave"
	kindState = "presence.state"
	kindBeat  = "presence.beat"
	kindSync  = "presence.sync"
	kindBye   = "presence.bye"
	// With webhooks: a node starts or stops carrying a channel (webhook.go).
	kindOccupied = "presence.occupied"
	kindVacated  = "presence.vacated"
)

// deltaNote is a join or a leave; Round is the sender's current round, so
// that a channel joined during a round is not dropped by its beat.
type deltaNote struct {
	Round   uint64 `json:"r"`
	Channel string `json:"c"`
	Member  Member `json:"m"`
}

// occupancyNote tells that the sender carries a channel, or no longer.
type occupancyNote struct {
	Round   uint64 `json:"r"`
	Channel string `json:"c"`
}

// stateNote is part of a round: parts of channels' member lists, and
// with webhooks some of the channels the sender carries.
type stateNote struct {
	Round   uint64      `json:"r"`
	Parts   []statePart `json:"s"`
	Carried []string    `json:"o,omitempty"`
}

// statePart is one part of a channel's members; the last has More false.
type statePart struct {
	Channel   string   `json:"c"`
	Part      int      `json:"p"`
	More      bool     `json:"more,omitempty"`
	Truncated bool     `json:"t,omitempty"`
	Members   []Member `json:"m"`
}

// beatNote ends a round: Notes state notes were sent in it, -1 when some
// could not be (the receivers then drop nothing).
type beatNote struct {
	Round uint64 `json:"r"`
	Notes int    `json:"n"`
	Since int64  `json:"since,omitempty"` // with webhooks: the sender's start, unix ns
}

// presence is one node's view of every presence channel's members.
type presence struct {
	maxMembers int
	expiry     time.Duration
	channels   []string // Config.PresenceChannels
	quiet      []string // Config.PresenceQuietChannels

	mu     sync.Mutex
	hubs   map[string]*server.Hub // the presence channels this node carries, for events
	local  map[string]*localSet
	byConn map[*server.Conn][]string // the presence channels each local conn is in (or refused)
	peers  map[nodeID]*peer
	round  uint64     // of this node's latest round
	wanted bool       // another node asked for a round (sync)
	synced bool       // this node asked the others (after start or a reconnection)
	hooks  *lifecycle // with webhooks (webhook.go), else nil
}

// localSet is a channel's members on this node.
type localSet struct {
	members map[*server.Conn]Member
	refused map[*server.Conn]struct{} // joined the hub past maxMembers: not tracked
}

// peer is what another node told of its members.
type peer struct {
	heard time.Time
	round uint64 // the round its latest state notes belong to
	notes int    // state notes heard of that round
	sets  map[string]*peerSet
	since int64             // its start (webhooks: the oldest reports); 0 until a beat tells
	carry map[string]uint64 // webhooks: the channels it carries, by the latest round that confirmed each
}

// peerSet is a channel's members on another node.
type peerSet struct {
	members   map[string]Member // by client
	truncated bool
	seen      uint64   // the latest round that confirmed it
	parts     []Member // a state being received in parts
	part      int      // the last part of it received; -1: none in progress, or one was lost
	cut       bool     // parts held more members than maxMembers
}

func newPresence(cfg Config) *presence {
	var hooks *lifecycle
	if cfg.Webhook.URL != "" {
		hooks = newLifecycle(cfg.Webhook)
	}
	return &presence{
		hooks:      hooks,
		maxMembers: cfg.PresenceMaxMembers,
		expiry:     cfg.PresenceExpiry,
		channels:   cfg.PresenceChannels,
		quiet:      cfg.PresenceQuietChannels,
		hubs:       make(map[string]*server.Hub),
		local:      make(map[string]*localSet),
		byConn:     make(map[*server.Conn][]string),
		peers:      make(map[nodeID]*peer),
	}
}

// has reports whether channel tracks presence.
func (p *presence) has(channel string) bool { return matchAny(p.channels, channel) }

// heartbeat is how often a node repeats its state.
func (p *presence) heartbeat() time.Duration { return p.expiry / 3 }

// memberOf is c as a member: its id on this node and its token's claims.
func (n *Node) memberOf(c *server.Conn) Member {
	m := Member{Client: n.clientID(c), User: c.Subject()}
	if info, ok := c.Claims()["info"].(map[string]any); ok {
		if b, err := json.Marshal(info); err == nil && len(b) <= maxInfoBytes {
			m.Info = b
		}
	}
	return m
}

// setHub records that this node carries channel, on hub; the registry
// calls it under its lock when it makes or removes a channel (nil hub).
func (p *presence) setHub(channel string, hub, old *server.Hub) {
	if !p.has(channel) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case hub != nil:
		p.hubs[channel] = hub
	case p.hubs[channel] == old:
		delete(p.hubs, channel)
	}
}

// announce tells channel's subscribers here of a join or a leave. p.mu is
// held.
func (p *presence) announce(kind, channel string, m Member) {
	if p.hooks != nil {
		p.hooks.memberLocked(channel, m, kind == "join")
	}
	h := p.hubs[channel]
	if h == nil || matchAny(p.quiet, channel) {
		return
	}
	h.BroadcastPrepared(replyFrame(reply{Type: kind, Channel: channel, Member: &m}))
}

// presenceJoin makes c, just joined to ch's hub, a member, unless the
// channel has maxMembers already. ch.mu is held.
func (n *Node) presenceJoin(c *server.Conn, ch *channel) {
	p := n.presence
	if !p.has(ch.name) {
		return
	}
	m := n.memberOf(c)
	p.mu.Lock()
	set := p.local[ch.name]
	if set == nil {
		set = &localSet{members: make(map[*server.Conn]Member), refused: make(map[*server.Conn]struct{})}
		p.local[ch.name] = set
	}
	_, in := set.members[c]
	_, out := set.refused[c]
	switch {
	case in || out:
	case p.countLocked(ch.name) >= p.maxMembers:
		set.refused[c] = struct{}{}
		p.byConn[c] = append(p.byConn[c], ch.name)
	default:
		set.members[c] = m
		p.byConn[c] = append(p.byConn[c], ch.name)
		p.announce("join", ch.name, m)
		n.sendPresence(kindJoin, deltaNote{Round: p.round, Channel: ch.name, Member: m})
	}
	p.mu.Unlock()
	// c may have closed (or left) between joining the hub and here, its
	// HandleClose finding nothing to remove: then it leaves now.
	if !slices.Contains(c.Hubs(), ch.hub) {
		n.presenceLeave(c, ch.name)
	}
}

// presenceLeave removes c from channel's members, if it was one.
func (n *Node) presenceLeave(c *server.Conn, channel string) {
	p := n.presence
	if !p.has(channel) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n.leaveLocked(c, channel) {
		p.byConn[c] = slices.DeleteFunc(p.byConn[c], func(s string) bool { return s == channel })
		if len(p.byConn[c]) == 0 {
			delete(p.byConn, c)
		}
	}
}

// leaveLocked removes c from channel and announces it; it reports whether
// c was there, tracked or refused. p.mu is held; byConn is the caller's.
func (n *Node) leaveLocked(c *server.Conn, channel string) bool {
	p := n.presence
	set := p.local[channel]
	if set == nil {
		return false
	}
	m, in := set.members[c]
	_, out := set.refused[c]
	delete(set.members, c)
	delete(set.refused, c)
	if len(set.members) == 0 && len(set.refused) == 0 {
		delete(p.local, channel)
	}
	if in {
		p.announce("leave", channel, m)
		n.sendPresence(kindLeave, deltaNote{Round: p.round, Channel: channel, Member: m})
	}
	return in || out
}

// HandleClose removes c from the presence channels it was a member of,
// and forgets what HandleConnect kept: its place among its user's
// connections, its headers for the backend hooks. Call it from
// server.Config.OnClose (cmd/fanout does); without it, a closed
// connection stays a member until its node restarts.
func (n *Node) HandleClose(c *server.Conn) {
	n.forgetHeaders(c)
	n.forgetUser(c)
	p := n.presence
	if len(p.channels) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, channel := range p.byConn[c] {
		n.leaveLocked(c, channel)
	}
	delete(p.byConn, c)
}

// countLocked is how many members of channel this node knows. p.mu is held.
func (p *presence) countLocked(channel string) int {
	count := 0
	if set := p.local[channel]; set != nil {
		count = len(set.members)
	}
	for _, pr := range p.peers {
		if s := pr.sets[channel]; s != nil {
			count += len(s.members)
		}
	}
	return count
}

// memberBytes is what m takes in a note, escapes included.
func memberBytes(m Member) int {
	b, _ := json.Marshal(m)
	return len(b) + 1
}

// Presence returns channel's members on every node, sorted by client, at
// most PresenceMaxMembers of them; truncated reports that there are more
// (or that a node refused joins past the bound). ErrNoPresence when
// channel does not track presence.
func (n *Node) Presence(channel string) (members []Member, truncated bool, err error) {
	if err := n.checkPresence(channel); err != nil {
		return nil, false, err
	}
	p := n.presence
	p.mu.Lock()
	members = []Member{}
	if set := p.local[channel]; set != nil {
		for _, m := range set.members {
			members = append(members, m)
		}
		truncated = len(set.refused) > 0
	}
	for _, pr := range p.peers {
		if s := pr.sets[channel]; s != nil {
			for _, m := range s.members {
				members = append(members, m)
			}
			truncated = truncated || s.truncated
		}
	}
	p.mu.Unlock()
	slices.SortFunc(members, func(a, b Member) int { return cmp.Compare(a.Client, b.Client) })
	members = slices.CompactFunc(members, func(a, b Member) bool { return a.Client == b.Client })
	if len(members) > p.maxMembers {
		members, truncated = members[:p.maxMembers], true
	}
	return members, truncated, nil
}

// PresenceStats counts channel's members and their distinct users.
func (n *Node) PresenceStats(channel string) (PresenceStats, error) {
	members, _, err := n.Presence(channel)
	if err != nil {
		return PresenceStats{}, err
	}
	users := make(map[string]struct{}, len(members))
	for _, m := range members {
		if m.User != "" {
			users[m.User] = struct{}{}
		}
	}
	return PresenceStats{Channel: channel, Clients: len(members), Users: len(users)}, nil
}

// checkPresence refuses a name that is no channel, or no presence channel.
func (n *Node) checkPresence(channel string) error {
	if err := CheckChannelName(channel); err != nil {
		return err
	}
	if !n.presence.has(channel) {
		return ErrNoPresence
	}
	return nil
}

// tracked counts the members this node holds, its own and others'.
func (p *presence) tracked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	count := 0
	for _, set := range p.local {
		count += len(set.members)
	}
	for _, pr := range p.peers {
		for _, s := range pr.sets {
			count += len(s.members)
		}
	}
	return count
}
