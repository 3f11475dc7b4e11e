//go:build linux

package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// hookedByExpress runs the Express backend and a fanout whose connect,
// subscribe, publish and rpc hooks are its, forwarding the session cookie,
// and returns the fanout's address and the backend's URL.
func hookedByExpress(t *testing.T) (addr, backend string) {
	backend = startBackend(t)
	addr = runHooked(t, "-proxy-connect-url", backend+"/connect", "-proxy-subscribe-url", backend+"/subscribe",
		"-proxy-publish-url", backend+"/publish", "-proxy-rpc-url", backend+"/rpc", "-proxy-headers", "Cookie")
	return addr, backend
}

// Python's websockets against the Express hooks (testdata/interop/hooks.py
// asserts each step): refused without a session, admitted and subscribed
// by the backend with one, a denied subscribe, a rewritten publish, an rpc.
func TestHooks_Python(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-websockets installs
	testutil.NeedTool(t, exec.Command(py, "-c", "import websockets").Run() == nil, "python3-websockets (apt-get install python3-websockets, or make deps)")
	addr, _ := hookedByExpress(t)
	runClient(t, py, filepath.Join("testdata", "interop", "hooks.py"), "ws://"+addr)
}

// Chromium through the demo page against the Express hooks
// (testdata/e2e/hooks.mjs asserts each step): the browser's cookie reaches
// the connect hook, the page shows the publish hook's rewrite, a denied
// subscribe and an rpc answer; a page without the cookie is refused.
func TestHooks_Chromium(t *testing.T) {
	needBrowser(t)
	addr, backend := hookedByExpress(t)
	runBrowserScript(t, "hooks.mjs", "http://"+addr+"/", backend)
}
