package rabbitmq

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/fanout-ws/fanout/server/pubsub/rabbitmq/rabbittest"
)

// rmq is the package's one rabbitmq-server: starting one takes seconds.
// Tests that stop it do not call t.Parallel, so they run before the
// parallel ones, one at a time; every test uses a stream of its own.
var rmq *rabbittest.Server

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rabbittest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rmq, err = rabbittest.Start(dir)
	switch {
	case errors.Is(err, rabbittest.ErrMissing) && os.Getenv("CI") == "":
		fmt.Fprintln(os.Stderr, "skipping the RabbitMQ tests:", err)
		os.Remove(dir)
		return 0
	case err != nil:
		fmt.Fprintln(os.Stderr, err) // CI must install it: make deps
		return 1
	}
	defer os.RemoveAll(dir) // kept when the server did not start: its log is there
	defer rmq.Close()
	return m.Run()
}
