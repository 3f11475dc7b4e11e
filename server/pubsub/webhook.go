package pubsub

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Lifecycle webhooks: the node POSTs batches of events to the
// application's backend (Webhook.URL):
//
//	{"id":"3f9a0c1d2e4b-7","time_ms":1733400000000,"events":[
//	  {"name":"channel_occupied","channel":"news","time_ms":1733399999750},
//	  {"name":"member_added","channel":"room:1","user":"alice","time_ms":...}]}
//
// channel_occupied and channel_vacated follow the first subscriber of a
// channel on any node and the last one gone from every node;
// member_added and member_removed the first and last member of a user
// (an anonymous member: its client id) in a presence channel, on any
// node. The body is signed: WebhookSignatureHeader carries
// "sha256=" and the hex HMAC-SHA256 of the body with Webhook.Secret.
//
// Cluster-wide, with no second mechanism: every node already learns every
// presence member over the node bus (presence.go), and with webhooks on
// its presence rounds also carry the channels it has subscribers for
// (occupancy notes, repaired and expired like members). So every node
// sees the same transitions; only the oldest live node (by start time,
// learned from the beats) reports them, so a transition is posted once
// whichever node saw the subscriber. A node that starts reports nothing
// for a heartbeat after its first sync (its view is still filling); if the
// oldest node dies, the next oldest reports from the moment it expires
// (transitions in between are lost: at most once).
//
// Debounce: an "off" event (vacated, removed) waits Debounce; an "on"
// event for the same channel (and user) within it cancels both, so a
// client that reconnects within Debounce, on any node, is reported
// neither leaving nor coming back. Events go to a bounded queue (full:
// dropped and counted, never waiting) and one goroutine posts them in
// order, up to MaxBatch per POST, each batch gathered over BatchWindow,
// retried on failure, a timeout, 408, 429 or 5xx up to Retries times
// with a doubling backoff, then dropped and counted. A batch keeps its id
// across retries: a backend that answered too late may get it twice.

// WebhookSignatureHeader carries the signature of a webhook's body.
const WebhookSignatureHeader = "X-Fanout-Signature"

// Defaults for Webhook.
const (
	DefaultWebhookDebounce    = 3 * time.Second
	DefaultWebhookBatchWindow = 250 * time.Millisecond
	DefaultWebhookMaxBatch    = 100
	DefaultWebhookQueue       = 10_000
	DefaultWebhookRetries     = 5
)

// Retry backoff: the first wait, doubling up to the last.
const (
	webhookFirstBackoff = 200 * time.Millisecond
	webhookMaxBackoff   = 10 * time.Second
)

// Webhook names the application backend's URL for lifecycle events and
// tunes their delivery. An empty URL sends none.
type Webhook struct {
	// URL receives the batches of events (POST, JSON).
	URL string
	// Secret signs each body (WebhookSignatureHeader); required with URL.
	Secret string
	// Debounce is how long a vacated or removed event waits for the
	// channel or member to come back, which cancels both. Zero means
	// DefaultWebhookDebounce (3 s).
	Debounce time.Duration
	// BatchWindow is how long a batch gathers events after its first.
	// Zero means DefaultWebhookBatchWindow (250 ms).
	BatchWindow time.Duration
	// MaxBatch bounds the events of one POST. Zero means
	// DefaultWebhookMaxBatch (100).
	MaxBatch int
	// Queue bounds the events waiting to be posted; beyond it they are
	// dropped and counted. Zero means DefaultWebhookQueue (10,000).
	Queue int
	// Retries is how many times a failed batch is posted again before it
	// is dropped. Zero means DefaultWebhookRetries (5); negative: none.
	Retries int
	// Timeout bounds each POST. Zero means DefaultProxyTimeout (2 s).
	Timeout time.Duration
	// Client sends the requests. Nil means one with keep-alive connections.
	Client *http.Client
}

func (w Webhook) withDefaults() Webhook {
	setDefault(&w.Debounce, DefaultWebhookDebounce)
	setDefault(&w.BatchWindow, DefaultWebhookBatchWindow)
	setDefault(&w.MaxBatch, DefaultWebhookMaxBatch)
	setDefault(&w.Queue, DefaultWebhookQueue)
	setDefault(&w.Retries, DefaultWebhookRetries)
	setDefault(&w.Timeout, DefaultProxyTimeout)
	w.Retries = max(w.Retries, 0)
	return w
}

func (w Webhook) validate() []error {
	var errs []error
	if w.URL == "" {
		return nil
	}
	if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
		errs = append(errs, fmt.Errorf("pubsub: Webhook.URL %q: want http:// or https://", w.URL))
	}
	if w.Secret == "" {
		errs = append(errs, fmt.Errorf("pubsub: Webhook.Secret is required with Webhook.URL"))
	}
	if w.Debounce < 0 || w.BatchWindow < 0 || w.Timeout < 0 || w.MaxBatch < 0 || w.Queue < 0 {
		errs = append(errs, fmt.Errorf("pubsub: Webhook.Debounce (%v), BatchWindow (%v), Timeout (%v), MaxBatch (%d) and Queue (%d) must not be negative",
			w.Debounce, w.BatchWindow, w.Timeout, w.MaxBatch, w.Queue))
	}
	return errs
}

// WebhookEvent is one lifecycle event.
type WebhookEvent struct {
	Name    string `json:"name"` // channel_occupied, channel_vacated, member_added, member_removed
	Channel string `json:"channel"`
	User    string `json:"user,omitempty"` // member events: the user, or an anonymous member's client id
	TimeMs  int64  `json:"time_ms"`        // when the reporting node saw the change
}

// webhookBatch is one POST's body.
type webhookBatch struct {
	ID     string         `json:"id"`
	TimeMs int64          `json:"time_ms"`
	Events []WebhookEvent `json:"events"`
}

// SignWebhook returns the WebhookSignatureHeader value of body: a backend
// computes it with its secret and compares (in constant time).
func SignWebhook(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// lifecycle is the webhooks' view of the cluster, kept under presence.mu:
// which channels every node carries and which users are members, and the
// events waiting for their debounce or their report.
type lifecycle struct {
	debounce time.Duration
	since    int64               // this node's start (unix ns): the oldest node reports
	warmAt   time.Time           // zero before the first sync: reports nothing before it
	carried  map[string]struct{} // the channels with subscribers on this node
	nodes    map[string]int      // channel: the nodes carrying it, this one included
	users    map[string]map[string]int
	pending  map[eventKey]WebhookEvent
	due      map[eventKey]time.Time
}

// eventKey names what an event is about: a channel, or a user in one.
type eventKey struct {
	channel, user string
	member        bool
}

func newLifecycle(w Webhook) *lifecycle {
	return &lifecycle{
		debounce: w.Debounce,
		since:    time.Now().UnixNano(),
		carried:  make(map[string]struct{}),
		nodes:    make(map[string]int),
		users:    make(map[string]map[string]int),
		pending:  make(map[eventKey]WebhookEvent),
		due:      make(map[eventKey]time.Time),
	}
}

// changeLocked records a transition of k: an "on" reported at once, an
// "off" after the debounce; one that finds the opposite still pending
// cancels it and is not reported either. presence.mu is held.
func (l *lifecycle) changeLocked(k eventKey, on bool) {
	if _, ok := l.pending[k]; ok {
		delete(l.pending, k)
		delete(l.due, k)
		return
	}
	names := [2][2]string{{"channel_vacated", "channel_occupied"}, {"member_removed", "member_added"}}
	now := time.Now()
	e := WebhookEvent{Name: names[b2i(k.member)][b2i(on)], Channel: k.channel, User: k.user, TimeMs: now.UnixMilli()}
	l.pending[k] = e
	l.due[k] = now
	if !on {
		l.due[k] = now.Add(l.debounce)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nodeLocked counts a node that starts or stops carrying channel.
// presence.mu is held.
func (l *lifecycle) nodeLocked(channel string, on bool) {
	if on {
		l.nodes[channel]++
		if l.nodes[channel] == 1 {
			l.changeLocked(eventKey{channel: channel}, true)
		}
		return
	}
	if l.nodes[channel]--; l.nodes[channel] <= 0 {
		delete(l.nodes, channel)
		l.changeLocked(eventKey{channel: channel}, false)
	}
}

// memberLocked counts a member that joins or leaves a presence channel in
// this node's view. presence.mu is held.
func (l *lifecycle) memberLocked(channel string, m Member, join bool) {
	user := cmp.Or(m.User, m.Client)
	users := l.users[channel]
	if users == nil {
		users = make(map[string]int)
		l.users[channel] = users
	}
	k := eventKey{channel: channel, user: user, member: true}
	if join {
		users[user]++
		if users[user] == 1 {
			l.changeLocked(k, true)
		}
		return
	}
	if users[user]--; users[user] <= 0 {
		delete(users, user)
		if len(users) == 0 {
			delete(l.users, channel)
		}
		l.changeLocked(k, false)
	}
}

// carry records whether this node has subscribers for channel: the
// registry calls it under its lock when it makes or removes a channel.
func (n *Node) carry(channel string, on bool) {
	p := n.presence
	l := p.hooks
	if l == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, had := l.carried[channel]
	if on == had {
		return
	}
	kind := kindVacated
	if on {
		kind = kindOccupied
		l.carried[channel] = struct{}{}
	} else {
		delete(l.carried, channel)
	}
	n.sendPresence(kind, occupancyNote{Round: p.round, Channel: channel})
	l.nodeLocked(channel, on)
}

// oldestLocked reports whether this node is the oldest of those with
// webhooks, the one that reports. A node whose age is not known yet (no
// beat heard) is passed over: after this node's warm-up, when every older
// node has sent a beat, that is a younger node, or one that
// posts no webhooks. presence.mu is held.
func (n *Node) oldestLocked() bool {
	p := n.presence
	for id, pr := range p.peers {
		if pr.since != 0 && (pr.since < p.hooks.since || pr.since == p.hooks.since && id < n.bus.id) {
			return false
		}
	}
	return true
}

// reportDue queues the events whose time came, if this node reports.
func (n *Node) reportDue(now time.Time) {
	p := n.presence
	l := p.hooks
	if l == nil {
		return
	}
	var due []WebhookEvent
	p.mu.Lock()
	if !l.warmAt.IsZero() && !now.Before(l.warmAt) {
		oldest := n.oldestLocked()
		for k, t := range l.due {
			if now.Before(t) {
				continue
			}
			if oldest {
				due = append(due, l.pending[k])
			}
			delete(l.pending, k)
			delete(l.due, k)
		}
	}
	p.mu.Unlock()
	slices.SortStableFunc(due, func(a, b WebhookEvent) int { return cmp.Compare(a.TimeMs, b.TimeMs) })
	for _, e := range due {
		n.webhooks.enqueue(e)
	}
}

// webhooks posts the events this node reports.
type webhooks struct {
	sent    atomic.Uint64
	dropped atomic.Uint64
	retries atomic.Uint64
	seq     atomic.Uint64

	cfg    Webhook
	client *http.Client
	queue  chan WebhookEvent
}

func newWebhooks(w Webhook) *webhooks {
	if w.Client == nil {
		w.Client = newHTTPClient(1) // one sender
	}
	return &webhooks{cfg: w, client: w.Client, queue: make(chan WebhookEvent, w.Queue)}
}

// enqueue queues e without waiting: a full queue drops it.
func (w *webhooks) enqueue(e WebhookEvent) {
	select {
	case w.queue <- e:
	default:
		w.dropped.Add(1)
	}
}

// runWebhooks posts the queued events in batches, in order, until ctx is
// done.
func (n *Node) runWebhooks(ctx context.Context) {
	w := n.webhooks
	for {
		var batch []WebhookEvent
		select {
		case <-ctx.Done():
			return
		case e := <-w.queue:
			batch = append(batch, e)
		}
		window := time.NewTimer(w.cfg.BatchWindow)
	gather:
		for len(batch) < w.cfg.MaxBatch {
			select {
			case <-ctx.Done():
				window.Stop()
				return
			case e := <-w.queue:
				batch = append(batch, e)
			case <-window.C:
				break gather
			}
		}
		window.Stop()
		n.postWebhook(ctx, batch)
	}
}

// postWebhook posts one batch, retrying with backoff, or drops it.
func (n *Node) postWebhook(ctx context.Context, events []WebhookEvent) {
	w := n.webhooks
	now := time.Now().UnixMilli()
	body, err := json.Marshal(webhookBatch{ID: fmt.Sprintf("%s-%d", n.bus.id, w.seq.Add(1)), TimeMs: now, Events: events})
	if err != nil {
		w.dropped.Add(uint64(len(events)))
		return
	}
	header := http.Header{WebhookSignatureHeader: {SignWebhook(w.cfg.Secret, body)}}
	backoff := webhookFirstBackoff
	for attempt := 0; ; attempt++ {
		resp, _, err := postJSON(ctx, w.client, w.cfg.URL, body, w.cfg.Timeout, header)
		if err == nil && resp.StatusCode/100 == 2 {
			w.sent.Add(uint64(len(events)))
			return
		}
		if err == nil {
			err = fmt.Errorf("backend answered %s", resp.Status)
		}
		retry := resp == nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		if !retry || attempt >= w.cfg.Retries {
			w.dropped.Add(uint64(len(events)))
			n.warnSampled("webhook batch dropped", "url", w.cfg.URL, "events", len(events), "attempts", attempt+1, "err", err)
			return
		}
		w.retries.Add(1)
		select {
		case <-ctx.Done():
			w.dropped.Add(uint64(len(events)))
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, webhookMaxBackoff)
	}
}
