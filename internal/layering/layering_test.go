// Package layering holds the test that keeps the module's rooms apart.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/fanout-ws/fanout"

// Each room imports only the rooms below it (STYLE.md §1): the engine
// knows nothing of channels or brokers (its own leaves under server/internal
// are its) and never links a broker's client
// (go-redis, RabbitMQ's, nats.go), pubsub none of its brokers' packages, frame and
// poller import no package of the module, and the load generator is a
// client that never imports the server.
func TestLayering_Imports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	for _, tc := range []struct {
		pkg       string
		forbidden []string // import path prefixes
	}{
		{"server", []string{module + "/server/pubsub", module + "/bench", module + "/cmd", "github.com/redis/", "github.com/rabbitmq/", "github.com/nats-io/"}},
		{"server/pubsub", []string{module + "/server/pubsub/", module + "/bench", module + "/cmd", "github.com/redis/", "github.com/rabbitmq/", "github.com/nats-io/"}},
		{"frame", []string{module + "/"}},
		{"poller", []string{module + "/"}},
		{"bench", []string{module + "/server", module + "/cmd"}},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", module+"/"+tc.pkg).Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if dep == module+"/"+tc.pkg {
					continue
				}
				for _, f := range tc.forbidden {
					if strings.HasPrefix(dep, f) {
						t.Errorf("%s imports %s", tc.pkg, dep)
					}
				}
			}
		})
	}
}
