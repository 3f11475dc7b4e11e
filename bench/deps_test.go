package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// The load generator is a client: it never imports the server.
func TestDeps_NoServer(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/fanout-ws/fanout/server" {
			t.Fatal("bench imports server")
		}
	}
}
