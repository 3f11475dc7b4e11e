//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
)

// webhookSecret is backend.mjs's default WEBHOOK_SECRET.
const webhookSecret = "webhook-s3cret"

// webhookLog is what backend.mjs's GET /webhooks answers.
type webhookLog struct {
	Batches []struct {
		ID     string
		Events []struct{ Name, Channel, User string }
	}
	Failed, BadSignature int
}

// count counts the events received named name about channel (and user).
func (l webhookLog) count(name, channel, user string) int {
	n := 0
	for _, b := range l.Batches {
		for _, e := range b.Events {
			if e.Name == name && e.Channel == channel && e.User == user {
				n++
			}
		}
	}
	return n
}

// awaitWebhook waits until the backend has received the event, and
// returns everything it has received.
func awaitWebhook(t *testing.T, backend, name, channel, user string) webhookLog {
	t.Helper()
	var l webhookLog
	eventually(t, 20*time.Second, func() error {
		l = webhookLog{}
		getJSON(t, backend+"/webhooks", &l)
		if l.count(name, channel, user) == 0 {
			return fmt.Errorf("no %s %s %s among %+v", name, channel, user, l.Batches)
		}
		return nil
	})
	if l.BadSignature != 0 {
		t.Fatalf("%d webhooks with a bad signature", l.BadSignature)
	}
	return l
}

// subscribeAs dials addr as user (a token) and subscribes to channel.
func subscribeAs(t *testing.T, addr, user, channel string) *websocket.Conn {
	t.Helper()
	c := dialHooked(t, addr, hookToken(t, user, time.Now().Add(time.Hour)))
	send(t, c, `{"op":"subscribe","channel":"`+channel+`"}`)
	readJSON(t, c, "subscribed")
	return c
}

// webhookNodes starts two fanout processes over a real Redis that post
// webhooks to backend, one after the other: the first is the oldest.
func webhookNodes(t *testing.T, backend string) []*node {
	t.Helper()
	bin := buildFanout(t)
	url := redistest.Start(t).URL()
	nodes := make([]*node, 2)
	for i := range nodes {
		n := startNode(t, bin, "-broker", url, "-jwt-secret", hookSecret, "-presence-channels", "room:*", "-presence-expiry", "1500ms",
			"-webhook-url", backend+"/webhook", "-webhook-secret", webhookSecret, "-webhook-debounce", "2s", "-webhook-batch-window", "50ms")
		eventually(t, 30*time.Second, func() error {
			if code, _ := get("http://" + n.admin + "/readyz"); code != http.StatusOK {
				return fmt.Errorf("node %d not ready: %d", i, code)
			}
			return nil
		})
		nodes[i] = n
	}
	return nodes
}

// Two fanout processes over a real Redis post lifecycle webhooks to the
// Express backend, which checks their signature: a channel is reported
// occupied once when subscribers come on both nodes and vacated once
// after both leave; presence members are added and removed once per user,
// and a user who reconnects on the other node within the debounce is
// reported neither removed nor added again; a batch the backend answers
// with 500 twice is posted again until it lands.
func TestWebhooks_TwoProcesses(t *testing.T) {
	backend := startBackend(t)
	nodes := webhookNodes(t, backend)
	addrs := []string{nodes[0].addr, nodes[1].addr}

	a := subscribeAs(t, addrs[0], "ann", "news")
	b := subscribeAs(t, addrs[1], "bob", "news")
	awaitWebhook(t, backend, "channel_occupied", "news", "")
	a.Close()
	b.Close()
	l := awaitWebhook(t, backend, "channel_vacated", "news", "")
	if n := l.count("channel_occupied", "news", ""); n != 1 {
		t.Fatalf("news reported occupied %d times, want once: %+v", n, l.Batches)
	}

	alice := subscribeAs(t, addrs[0], "alice", "room:1")
	awaitWebhook(t, backend, "member_added", "room:1", "alice")
	alice.Close()
	alice = subscribeAs(t, addrs[1], "alice", "room:1") // a reconnect, to the other node
	bob := subscribeAs(t, addrs[0], "bob", "room:1")
	awaitWebhook(t, backend, "member_added", "room:1", "bob")
	bob.Close()
	// Bob's removal is due after alice's would have been: the sender posts
	// in order, so by now a removal of alice would have arrived.
	l = awaitWebhook(t, backend, "member_removed", "room:1", "bob")
	if removed, added := l.count("member_removed", "room:1", "alice"), l.count("member_added", "room:1", "alice"); removed != 0 || added != 1 {
		t.Fatalf("alice's reconnect was reported: removed %d, added %d times: %+v", removed, added, l.Batches)
	}
	alice.Close()
	l = awaitWebhook(t, backend, "channel_vacated", "room:1", "")
	if l.count("member_removed", "room:1", "alice") != 1 || l.count("channel_occupied", "room:1", "") != 1 {
		t.Fatalf("alice's leave or room:1's occupation not reported once: %+v", l.Batches)
	}

	resp, err := http.Post(backend+"/webhook/fail", "application/json", strings.NewReader(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	subscribeAs(t, addrs[1], "carol", "retried")
	l = awaitWebhook(t, backend, "channel_occupied", "retried", "")
	if l.Failed != 2 || l.count("channel_occupied", "retried", "") != 1 {
		t.Fatalf("after %d failures, retried reported occupied %d times", l.Failed, l.count("channel_occupied", "retried", ""))
	}
}

// The oldest node, the one that posts, is SIGKILLed: the other takes over
// once it expires, reporting the channel the dead node's client had
// occupied as vacated (and not its own channel), then its own new events.
func TestWebhooks_OldestDies(t *testing.T) {
	backend := startBackend(t)
	nodes := webhookNodes(t, backend)
	subscribeAs(t, nodes[0].addr, "ann", "solo")
	subscribeAs(t, nodes[1].addr, "bob", "kept")
	awaitWebhook(t, backend, "channel_occupied", "solo", "")
	awaitWebhook(t, backend, "channel_occupied", "kept", "")
	nodes[0].kill()
	awaitWebhook(t, backend, "channel_vacated", "solo", "")
	subscribeAs(t, nodes[1].addr, "bob", "later")
	l := awaitWebhook(t, backend, "channel_occupied", "later", "")
	if l.count("channel_vacated", "kept", "") != 0 || l.count("channel_vacated", "solo", "") != 1 {
		t.Fatalf("after the oldest died: %+v", l.Batches)
	}
}

// A webhook backend that accepts connections and never answers neither
// delays delivery nor holds events without bound: a subscriber still gets
// its messages, and the events past the queue are dropped and counted.
func TestWebhooks_BackendHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // read nothing, answer nothing
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addrs, _ := startRun(t, ctx, "-admin-addr", "127.0.0.1:0", "-presence-expiry", "600ms",
		"-webhook-url", "http://"+ln.Addr().String()+"/hook", "-webhook-secret", webhookSecret,
		"-webhook-timeout", "1m", "-webhook-queue", "2", "-webhook-max-batch", "1", "-webhook-batch-window", "1ms")

	var channels []string
	for i := range 20 {
		channels = append(channels, "channel=c"+strconv.Itoa(i))
	}
	sub, _, err := websocket.DefaultDialer.Dial("ws://"+addrs.addr+"/ws?"+strings.Join(channels, "&"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	eventually(t, 20*time.Second, func() error {
		_, page := get("http://" + addrs.admin + "/metrics")
		if n, _ := strconv.Atoi(metric(page, "fanout_webhook_events_dropped_total")); n == 0 {
			return fmt.Errorf("no webhook event dropped yet")
		}
		return nil
	})
	d := websocket.Dialer{Subprotocols: []string{"fanout"}}
	pub, _, err := d.Dial("ws://"+addrs.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	send(t, pub, `{"op":"publish","channel":"c0","data":"still delivered"}`)
	_ = sub.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		var m map[string]any
		if err := sub.ReadJSON(&m); err != nil {
			t.Fatalf("no delivery while the webhook backend hangs: %v", err)
		}
		if m["type"] == "message" && m["data"] == "still delivered" {
			return
		}
	}
}

// The webhook flags reach pubsub.Config, which checks them, and
// -print-config hides the secret.
func TestWebhooks_Flags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-url", "http://127.0.0.1:1/hook"}, "Webhook.Secret is required"},
		{[]string{"-webhook-url", "ftp://x", "-webhook-secret", "s"}, `Webhook.URL "ftp://x"`},
		{[]string{"-webhook-url", "http://x", "-webhook-secret", "s", "-webhook-queue", "-1"}, "Queue (-1)"},
	} {
		err := run(context.Background(), append([]string{"-check-config"}, tc.args...), io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-print-config", "-webhook-url", "http://x/hook", "-webhook-secret", "sekrit-hook"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "sekrit") || !strings.Contains(s, `"webhook_secret_set": true`) || !strings.Contains(s, `"webhook_debounce": "3s"`) {
		t.Fatalf("-print-config:\n%s", s)
	}
}
