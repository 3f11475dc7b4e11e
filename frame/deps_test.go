package frame

import (
	"os/exec"
	"strings"
	"testing"
)

// frame is the bottom of the import graph: it imports the standard library
// and one codec, klauspost/compress's flate (3.6x faster than
// compress/flate on a 1 KiB message: BenchmarkDeflateLibs), and so no
// package of this module.
func TestDeps_StdlibAndFlateOnly(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}} {{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "github.com/fanout-ws/fanout/frame"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) < 2:
			t.Errorf("unexpected go list line %q", line)
		case f[0] == self:
		case len(f) > 2 && f[2] == "github.com/fanout-ws/fanout":
			t.Errorf("frame imports %s of its own module", f[0])
		case len(f) > 2 && f[2] == "github.com/klauspost/compress":
		case f[1] != "true":
			t.Errorf("frame imports %s from outside the standard library", f[0])
		}
	}
}
