//go:build linux

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// allowed is the CPU list a process may run on, from /proc.
func allowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no Cpus_allowed_list")
	return ""
}

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// A server started pinned runs on the CPU asked from its first
// instruction; a running one is pinned thread by thread.
func TestPin_StartAndRunning(t *testing.T) {
	last := runtime.NumCPU() - 1
	want := fmt.Sprint(last)
	started := sleeper(t)
	if err := startPinned(started, []int{last}); err != nil {
		t.Fatal(err)
	}
	if got := allowed(t, started.Process.Pid); got != want {
		t.Fatalf("started pinned: allowed CPUs %q, want %q", got, want)
	}
	running := sleeper(t)
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	if err := PinProcess(running.Process.Pid, []int{last}); err != nil {
		t.Fatal(err)
	}
	if got := allowed(t, running.Process.Pid); got != want {
		t.Fatalf("pinned while running: allowed CPUs %q, want %q", got, want)
	}
	if err := PinProcess(running.Process.Pid, []int{runtime.NumCPU()}); err == nil {
		t.Fatal("pinning to a CPU the machine lacks succeeded")
	}
}

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"1", "[1]", true},
		{"0,2", "[0 2]", true},
		{"0-3", "[0 1 2 3]", true},
		{"3-1", "", false},
		{"x", "", false},
		{"", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCPUs(tc.in)
			if (err == nil) != tc.ok || (tc.ok && fmt.Sprint(got) != tc.want) {
				t.Fatalf("ParseCPUs(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
