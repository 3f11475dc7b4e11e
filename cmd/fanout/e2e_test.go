//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// chromiumPath is Debian's chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser_ChatAndRecovery builds the fanout binary and runs
// testdata/e2e/e2e.mjs, which owns the server process and drives the demo page
// in two headless Chromium pages: chat both ways, recovery of 3 messages after
// a simulated network drop, and reconnection with backoff after the server is
// SIGKILLed and restarted on the same port. Screenshots go to $FANOUT_E2E_OUT,
// or else to the test's temporary directory.
func TestBrowser_ChatAndRecovery(t *testing.T) { runE2E(t) }

// TestBrowser_ChatAndRecoveryTLS is the same over https and wss: Chromium
// speaks TLS 1.3, so its connections run on the server's own record layer.
func TestBrowser_ChatAndRecoveryTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "e2e")
	runE2E(t, certFile, keyFile)
}

// TestBrowser_ChatAndRecoveryTLS12 is the same with Chromium capped at TLS
// 1.2, which the server serves through crypto/tls.
func TestBrowser_ChatAndRecoveryTLS12(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "e2e")
	runE2E(t, certFile, keyFile, "1.2")
}

// runE2E runs e2e.mjs with args after its own (a certificate and key).
func runE2E(t *testing.T, args ...string) {
	needBrowser(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "fanout")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	outDir := os.Getenv("FANOUT_E2E_OUT")
	if outDir == "" {
		outDir = tmp
	} else if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	runBrowserScript(t, "e2e.mjs", append([]string{bin, outDir}, args...)...)
	t.Logf("screenshots and server.log in %s", outDir)
}

// needBrowser skips the test without node, Chromium and playwright-core.
func needBrowser(t *testing.T) {
	_, nodeErr := exec.LookPath("node")
	_, chromiumErr := os.Stat(chromiumPath)
	_, pwErr := os.Stat(filepath.Join("testdata", "e2e", "node_modules", "playwright-core"))
	switch {
	case nodeErr != nil:
		testutil.NeedTool(t, false, "node")
	case chromiumErr != nil:
		testutil.NeedTool(t, false, chromiumPath+" (apt-get install chromium, or make deps)")
	case pwErr != nil:
		testutil.NeedTool(t, false, "playwright-core (npm ci --prefix cmd/fanout/testdata/e2e, or make deps)")
	}
}

// runBrowserScript runs testdata/e2e/<script> with args under node for 90 s
// at most and fails the test if it fails. Its output goes to t.Log.
func runBrowserScript(t *testing.T, script string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join("testdata", "e2e", script)}, args...)...)
	// node and the processes it starts (Chromium, fanout) share a process
	// group, so one kill ends them all, whatever state the script is in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out := &lineLogger{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	out.flush()
	t.Logf("%s took %v", script, time.Since(start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("%s killed after %v", script, time.Since(start).Round(time.Second))
	}
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}

// lineLogger passes the script's output to t.Log a line at a time, as it comes.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(string(l.buf))
		l.buf = nil
	}
}
