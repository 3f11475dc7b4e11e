//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server/pubsub/pubsubtest"
	"github.com/fanout-ws/fanout/server/pubsub/rabbitmq/rabbittest"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
)

// process is a fanout process as pubsubtest.PresenceScenario drives it:
// its answer comes from GET /api/presence, and it dies by SIGKILL.
type process struct{ *node }

func (p process) WS() string { return "ws://" + p.addr + "/ws" }

func (p process) Presence(channel string) ([]testutil.Member, bool, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/api/presence?channel="+channel, nil)
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	var out struct {
		Members   []testutil.Member
		Truncated bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("GET /api/presence: %d %v", resp.StatusCode, err)
	}
	return out.Members, out.Truncated, nil
}

func (p process) Kill() { p.kill() }

// Three fanout processes with -presence-channels on one broker, Redis or
// RabbitMQ: members join and leave on different processes, one process
// is SIGKILLed, and every survivor's GET /api/presence equals the true set
// within -presence-expiry; join and leave events arrive in order per
// member (pubsubtest.PresenceScenario).
func TestPresence_ThreeProcesses(t *testing.T) {
	bin := buildFanout(t)
	for _, tc := range []struct {
		name   string
		broker func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return redistest.Start(t).URL() }},
		{"rabbitmq", func(t *testing.T) string {
			r, err := rabbittest.Start(t.TempDir())
			testutil.NeedTool(t, err != rabbittest.ErrMissing, "apt-get install rabbitmq-server (make deps)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			return r.URL("fanout-presence")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.broker(t)
			ns := make([]pubsubtest.PresenceNode, 3)
			for i := range ns {
				n := startNode(t, bin, "-broker", url, "-api-key", testAPIKey, "-jwt-secret", string(pubsubtest.PresenceSecret),
					"-presence-channels", "room:*", "-presence-expiry", pubsubtest.PresenceExpiry.String())
				eventually(t, 30*time.Second, func() error {
					if code, _ := get("http://" + n.admin + "/readyz"); code != http.StatusOK {
						return fmt.Errorf("node %d not ready: %d", i, code)
					}
					return nil
				})
				ns[i] = process{n}
			}
			pubsubtest.PresenceScenario(t, ns, 10*time.Second)
		})
	}
}

// The presence flags reach pubsub.Config, which checks them.
func TestPresence_FlagsChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-presence-expiry", "100ms"}, "PresenceExpiry (100ms)"},
		{[]string{"-presence-max-members", "-1"}, "PresenceMaxMembers (-1)"},
		{[]string{"-presence-channels", "room:["}, `channel pattern "room:["`},
		{[]string{"-presence-quiet-channels", "["}, `channel pattern "["`},
	} {
		err := run(context.Background(), append([]string{"-check-config"}, tc.args...), io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if err := run(context.Background(), []string{"-check-config", "-presence-channels", "room:*,doc:*", "-presence-events=false"}, io.Discard, io.Discard, nil); err != nil {
		t.Errorf("valid presence flags refused: %v", err)
	}
}

// fanout.js (under Node) hears a presence channel's joins and leaves and
// asks for its members and counts.
func TestPresence_FanoutJS(t *testing.T) {
	_, err := exec.LookPath("node")
	_, wsErr := os.Stat("testdata/interop/node_modules/ws")
	testutil.NeedTool(t, err == nil && wsErr == nil, "node and `npm ci --prefix cmd/fanout/testdata/interop`")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addrs, _ := startRun(t, ctx, "-jwt-secret", string(pubsubtest.PresenceSecret), "-presence-channels", "room:*")
	cmd := exec.Command("node", filepath.Join("testdata", "interop", "presence.mjs"),
		"ws://"+addrs.addr+"/ws", pubsubtest.Token(t, "ann"), pubsubtest.Token(t, "bob"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("presence.mjs: %v", err)
	}
	var r struct {
		Joined, Left testutil.Member
		Members      []testutil.Member
		Stats        struct{ Clients, Users int }
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	users, err := pubsubtest.PresenceUsers(r.Members)
	if err != nil || !slices.Equal(users, []string{"ann", "bob"}) || r.Stats.Clients != 2 || r.Stats.Users != 2 ||
		r.Joined.User != "bob" || string(r.Joined.Info) != `{"name":"bob"}` || r.Left.Client != r.Joined.Client {
		t.Fatalf("fanout.js: %+v (%v)", r, err)
	}
}
