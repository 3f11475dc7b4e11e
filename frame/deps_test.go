package frame

import (
	"os/exec"
	"strings"
	"testing"
)

// frame is pure: it imports the standard library only.
func TestDeps_StdlibOnly(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/fanout-ws/fanout/frame" {
			t.Errorf("frame depends on %s", p)
		}
	}
}
