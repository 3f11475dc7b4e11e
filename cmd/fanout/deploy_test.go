//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server/pubsub/redis/redistest"
	"github.com/gorilla/websocket"
)

// TestDeploy_HAProxy runs deploy/haproxy.cfg as it ships, in a real haproxy
// in front of three fanout processes on one redis-server. Clients connect
// from their own loopback addresses (127.0.0.10-21) through HAProxy; a
// message published on one node reaches all of them; each node logs its
// clients' own addresses (PROXY v2); a SIGKILLed node's clients reconnect
// through HAProxy to the others and recover what they missed with since=;
// a reload of HAProxy keeps the open connections; and a drained node leaves
// the rotation through its /readyz before it stops accepting.
func TestDeploy_HAProxy(t *testing.T) {
	haproxy := findTool(t, "haproxy", "/usr/sbin/haproxy", "haproxy")
	r := redistest.Start(t)
	bin := buildFanout(t)
	var nodes []*node
	for range 3 {
		nodes = append(nodes, startNode(t, bin, "-broker", r.URL(), "-api-key", testAPIKey,
			"-trusted-proxies", "127.0.0.1", "-proxy-protocol", "required", "-drain-grace", "30s"))
	}
	lb := startHAProxy(t, haproxy, nodes)
	lb.waitServersUp(t, 3)

	const clients = 12
	conns := make([]*websocket.Conn, clients)
	var epoch string
	for i := range conns {
		conns[i] = dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), "ws://"+lb.addr+"/ws?channel=news", nil)
		epoch = readJSON(t, conns[i], "subscribed")["epoch"].(string)
	}
	// Each node saw its clients' own addresses, and every node has some.
	owner := make([]*node, clients)
	for i, c := range conns {
		owner[i] = whoSaw(t, nodes, c.LocalAddr().String())
	}
	for i, n := range nodes {
		if !slices.Contains(owner, n) {
			t.Fatalf("node %d got none of the %d clients", i, clients)
		}
	}

	publish(t, nodes[0], 1)
	expectOffsets(t, conns, 1)
	tokenStaysOutOfLog(t, lb)

	victim := nodes[1]
	victim.kill()
	var lost []int
	for i, c := range conns {
		if owner[i] == victim {
			lost = append(lost, i)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := c.ReadMessage(); err == nil {
				t.Fatalf("client %d of the killed node still reads", i)
			}
		}
	}
	publish(t, nodes[0], 2) // missed by the killed node's clients
	publish(t, nodes[2], 3)
	for _, i := range lost {
		url := fmt.Sprintf("ws://%s/ws?channel=news&since=1&epoch=%s", lb.addr, epoch)
		conns[i] = dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), url, nil)
		readJSON(t, conns[i], "subscribed")
		if n := whoSaw(t, nodes, conns[i].LocalAddr().String()); n == victim {
			t.Fatalf("client %d reconnected to the killed node", i)
		}
	}
	expectOffsets(t, conns, 2, 3) // the others receive them live, the lost ones from history

	// A reload: the old worker keeps serving the open connections, the new
	// one takes new clients.
	lb.reload(t)
	publish(t, nodes[2], 4)
	expectOffsets(t, conns, 4)
	late := dialFrom(t, "127.0.0.30", "ws://"+lb.addr+"/ws?channel=news", nil)
	readJSON(t, late, "subscribed")
	publish(t, nodes[0], 5)
	expectOffsets(t, append(conns, late), 5)

	// A drain: /readyz turns 503 at once, so HAProxy's checks take the node
	// out of rotation while it still accepts (within -drain-grace), and
	// new clients go to the node left.
	drained := nodes[0]
	resp, err := http.Post("http://"+drained.admin+"/admin/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lb.waitDown(t, "node1") // "UP 1/2" after one failed check: still in rotation
	for _, l := range drained.lines() {
		if l["msg"] == "drain: listeners closed, closing connections" {
			t.Fatal("the drained node closed its listener before HAProxy marked it down")
		}
	}
	for i := range 4 {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 31+i), "ws://"+lb.addr+"/ws?channel=news", nil)
		readJSON(t, c, "subscribed")
		if n := whoSaw(t, nodes, c.LocalAddr().String()); n != nodes[2] {
			t.Fatalf("client %d went to a node out of rotation", i)
		}
	}
}

// tokenStaysOutOfLog checks that a token in the query string (?token=, what
// browsers send) stays out of HAProxy's log: its line for the request has
// the path, not the query.
func tokenStaysOutOfLog(t *testing.T, l *lb) {
	t.Helper()
	const secret = "c2VjcmV0LXNpZ25hdHVyZQ"
	c := dialFrom(t, "127.0.0.40", "ws://"+l.addr+"/ws?channel=news&token=eyJhbGciOiJIUzI1NiJ9.e30."+secret, nil)
	readJSON(t, c, "subscribed")
	src := c.LocalAddr().String()
	c.Close() // HAProxy logs a tunnel when it ends
	var logged string
	testutil.Eventually(t, 10*time.Second, func() error {
		for line := range strings.SplitSeq(l.text(), "\n") {
			if strings.Contains(line, src+" ") {
				logged = line
				return nil
			}
		}
		return fmt.Errorf("haproxy logged nothing for %s:\n%s", src, l.text())
	})
	if strings.Contains(logged, secret) || !strings.Contains(logged, `"GET /ws HTTP/1.1"`) {
		t.Fatalf("haproxy log line %q: want the path without the token", logged)
	}
}

// Through deploy/haproxy.cfg (PROXY v2 to the node), a client's plain HTTP
// connections count in its per-IP limit on the node (issue 24, finding 6):
// an address holding -max-conns-per-ip keep-alive connections gets 429 on
// its next one, while another address still upgrades.
func TestDeploy_HAProxyPlainHTTPPerIP(t *testing.T) {
	haproxy := findTool(t, "haproxy", "/usr/sbin/haproxy", "haproxy")
	n := startNode(t, buildFanout(t), "-api-key", testAPIKey, "-trusted-proxies", "127.0.0.1", "-proxy-protocol", "required",
		"-max-conns-per-ip", "2", "-handshake-timeout", "30s") // keep-alive idle: the held connections stay
	lb := startHAProxy(t, haproxy, []*node{n, n, n}) // one node behind all three server lines
	lb.waitServersUp(t, 3)
	for i, want := range []int{200, 200, 429} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 60)}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", lb.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: fanout\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("keep-alive connection %d of 127.0.0.60: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	dialFrom(t, "127.0.0.61", "ws://"+lb.addr+"/ws", nil)
}

// findTool finds a tool by name or at path (Debian puts daemons in
// /usr/sbin); without it the test is skipped, or fails in CI.
func findTool(t *testing.T, name, path, pkg string) string {
	t.Helper()
	for _, p := range []string{name, path} {
		if found, err := exec.LookPath(p); err == nil {
			return found
		}
	}
	testutil.NeedTool(t, false, "apt-get install "+pkg+" (make deps)")
	return ""
}

// buildFanout builds this command into a temporary directory.
func buildFanout(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fanout")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// node is one fanout process with JSON debug logs.
type node struct {
	cmd         *exec.Cmd
	addr, admin string
	logs        *testutil.SyncBuffer
}

func startNode(t *testing.T, bin string, args ...string) *node {
	t.Helper()
	return launchNode(t, exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-log-format", "json", "-log-level", "debug"}, args...)...))
}

// launchNode starts cmd, a fanout that logs JSON with an admin listener,
// and waits for its listening addresses.
func launchNode(t *testing.T, cmd *exec.Cmd) *node {
	t.Helper()
	n := &node{cmd: cmd, logs: &testutil.SyncBuffer{}}
	n.cmd.Stderr = n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s log:\n%s", n.addr, n.text())
		}
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, l := range n.lines() {
			switch l["msg"] {
			case "fanout":
				n.addr, _ = l["addr"].(string)
			case "admin listener":
				n.admin, _ = l["addr"].(string)
			}
		}
		if n.addr == "" || n.admin == "" {
			return fmt.Errorf("no listening addresses logged yet:\n%s", n.text())
		}
		return nil
	})
	return n
}

func (n *node) text() string {
	return n.logs.String()
}

func (n *node) lines() []map[string]any {
	var ls []map[string]any
	for line := range strings.SplitSeq(n.text(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			ls = append(ls, l)
		}
	}
	return ls
}

func (n *node) kill() {
	if n.cmd.ProcessState == nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	}
}

// whoSaw returns the node that logged an upgrade from remote.
func whoSaw(t *testing.T, nodes []*node, remote string) *node {
	t.Helper()
	var found *node
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, n := range nodes {
			for _, l := range n.lines() {
				if l["msg"] == "upgraded" && l["remote"] == remote {
					found = n
					return nil
				}
			}
		}
		return fmt.Errorf("no node logged an upgrade from %s", remote)
	})
	return found
}

// lb is a haproxy master process running deploy/haproxy.cfg.
type lb struct {
	cmd        *exec.Cmd
	addr, sock string
	logs       *testutil.SyncBuffer
}

// startHAProxy runs haproxy in master-worker mode on a listening socket the
// test opened (fd@3), so no port is picked ahead and lost to another test.
func startHAProxy(t *testing.T, bin string, nodes []*node) *lb {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer ln.Close()
	l := &lb{addr: ln.Addr().String(), sock: filepath.Join(t.TempDir(), "admin.sock"), logs: &testutil.SyncBuffer{}}
	l.cmd = exec.Command(bin, "-W", "-db", "-f", filepath.Join("..", "..", "deploy", "haproxy.cfg"))
	l.cmd.Env = append(os.Environ(), "FANOUT_LB_BIND=fd@3", "HAPROXY_SOCKET="+l.sock, "HAPROXY_NO_SETUID=1",
		"HAPROXY_MAXCONN=2000", "HAPROXY_HARD_STOP_AFTER=30s")
	for i, n := range nodes {
		l.cmd.Env = append(l.cmd.Env, fmt.Sprintf("FANOUT_NODE%d=%s", i+1, n.addr))
	}
	l.cmd.ExtraFiles = []*os.File{f}
	l.cmd.Stdout, l.cmd.Stderr = l.logs, l.logs
	// The master and its workers share a process group: one kill ends all.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
		_ = l.cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy log:\n%s", l.text())
		}
	})
	return l
}

func (l *lb) text() string {
	return l.logs.String()
}

// waitServersUp waits until haproxy's health checks (/readyz) see n nodes
// UP, asking its admin socket.
func (l *lb) waitServersUp(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() error {
		stat, err := l.admin("show stat")
		if err != nil {
			return err
		}
		up := 0
		for line := range strings.SplitSeq(stat, "\n") {
			f := strings.Split(line, ",")
			if len(f) > 17 && f[0] == "fanout" && strings.HasPrefix(f[1], "node") && f[17] == "UP" {
				up++
			}
		}
		if up != n {
			return fmt.Errorf("%d of %d nodes UP:\n%s", up, n, stat)
		}
		return nil
	})
}

// waitDown waits until haproxy's health checks mark server DOWN.
func (l *lb) waitDown(t *testing.T, server string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() error {
		stat, err := l.admin("show stat")
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(stat, "\n") {
			if f := strings.Split(line, ","); len(f) > 17 && f[0] == "fanout" && f[1] == server && f[17] == "DOWN" {
				return nil
			}
		}
		return fmt.Errorf("%s not DOWN:\n%s", server, stat)
	})
}

func (l *lb) admin(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", l.sock, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// reload sends SIGUSR2 to the master (what `systemctl reload` does) and
// waits for the new worker.
func (l *lb) reload(t *testing.T) {
	t.Helper()
	before := strings.Count(l.text(), "Loading success")
	if err := l.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		if strings.Count(l.text(), "Loading success") <= before {
			return fmt.Errorf("haproxy has not reloaded:\n%s", l.text())
		}
		return nil
	})
}

// dialer dials from the loopback address src.
func dialer(src string) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		HandshakeTimeout: 5 * time.Second,
	}
}

// dialFrom opens a WebSocket from the loopback address src.
func dialFrom(t *testing.T, src, url string, h http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := dialer(src).Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s from %s: %v (status %d)", url, src, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publish posts data to channel news through n's HTTP API, from an address
// n does not trust (so without a PROXY header).
func publish(t *testing.T, n *node, data int) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}}).DialContext,
	}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+n.addr+"/api/publish",
		strings.NewReader(`{"channel":"news","data":`+strconv.Itoa(data)+`}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish %d: %d %s", data, resp.StatusCode, body)
	}
}

// expectOffsets checks that every connection receives these offsets, in
// order, each carrying its offset as data.
func expectOffsets(t *testing.T, conns []*websocket.Conn, offsets ...float64) {
	t.Helper()
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for _, want := range offsets {
			m := readJSON(t, c, "message")
			if m["offset"] != want || m["data"] != want {
				t.Fatalf("client %d got %v, want offset %v", i, m, want)
			}
		}
	}
}

// TestDeploy_Nginx runs deploy/nginx.conf (its upstreams and port pointed at
// a test node) in a real nginx: the node learns each client's own address
// from X-Forwarded-For, so -max-conns-per-ip 1 refuses a second connection
// from one client and admits another client's, whatever X-Forwarded-For the
// clients themselves send.
func TestDeploy_Nginx(t *testing.T) {
	nginx := findTool(t, "nginx", "/usr/sbin/nginx", "nginx-light")
	n := startNode(t, buildFanout(t), "-trusted-proxies", "127.0.0.1", "-forwarded-header", "X-Forwarded-For", "-max-conns-per-ip", "1")
	addr := startNginx(t, nginx, n.addr)
	spoof := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	first := dialFrom(t, "127.0.0.40", "ws://"+addr+"/echo", spoof("6.6.6.6"))
	if got := whoSaw(t, []*node{n}, "127.0.0.40:0"); got != n {
		t.Fatal("the node did not see the client's address")
	}
	if _, resp, err := dialer("127.0.0.40").Dial("ws://"+addr+"/echo", spoof("7.7.7.7")); err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("second connection of 127.0.0.40 behind a forged X-Forwarded-For: %v, want 429", err)
	}
	dialFrom(t, "127.0.0.41", "ws://"+addr+"/echo", nil)
	if err := first.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := first.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("echo through nginx: %q, %v", p, err)
	}
}

// startNginx runs deploy/nginx.conf in the foreground with its upstreams
// replaced by upstream and its port by a free one, and returns its address.
func startNginx(t *testing.T, bin, upstream string) string {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	text := string(conf)
	for _, r := range [][2]string{{"10.0.0.11:8080", upstream}, {"10.0.0.12:8080", upstream}, {"10.0.0.13:8080", upstream},
		{"listen 80;", "listen " + addr + ";"}, {"pid /run/nginx.pid;", "pid " + dir + "/nginx.pid;"}} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("deploy/nginx.conf no longer has %q", r[0])
		}
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "-c", path, "-p", dir, "-e", "stderr", "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx log:\n%s", logs.String())
		}
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}

// TestDeploy_Dockerfile runs fanout with the environment the image sets
// (its ports moved to free ones) and runs the image's HEALTHCHECK: the
// check passes on the public port, while metrics and pprof are served on
// loopback only, never on the public port.
func TestDeploy_Dockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	final := text[strings.LastIndex(text, "\nFROM "):] // the image, not the build stage
	var env []string
	var check []string
	for line := range strings.SplitSeq(final, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "ENV":
			for _, kv := range f[1:] {
				env = append(env, strings.NewReplacer("8080", "0", "9090", "0").Replace(kv))
			}
		case len(f) > 0 && f[0] == "HEALTHCHECK":
			if err := json.Unmarshal([]byte(line[strings.Index(line, " CMD ")+5:]), &check); err != nil {
				t.Fatalf("HEALTHCHECK %q: %v", line, err)
			}
		}
	}
	if len(check) < 2 || check[0] != "/fanout" {
		t.Fatalf("HEALTHCHECK runs %q, want /fanout probe URL", check)
	}
	cmd := exec.Command(buildFanout(t))
	cmd.Env = env
	n := launchNode(t, cmd)
	if host, _, _ := net.SplitHostPort(n.admin); !net.ParseIP(host).IsLoopback() {
		t.Errorf("the image's admin listener (metrics, pprof) is on %s, want loopback only", n.admin)
	}
	_, pub, _ := net.SplitHostPort(n.addr)
	_, adm, _ := net.SplitHostPort(n.admin)
	args := slices.Clone(check[1:])
	for i := range args {
		args[i] = strings.NewReplacer(":8080/", ":"+pub+"/", ":9090/", ":"+adm+"/").Replace(args[i])
	}
	if out, err := exec.Command(n.cmd.Path, args...).CombinedOutput(); err != nil {
		t.Errorf("HEALTHCHECK %q: %v %s", args, err, out)
	}
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 404, "/debug/pprof/": 404} {
		if code, _ := get("http://127.0.0.1:" + pub + path); code != want {
			t.Errorf("public port %s: %d, want %d", path, code, want)
		}
	}
}

// TestDeploy_SystemdUnit checks deploy/fanout.service: its settings start
// fanout (-check-config), keep the admin listener on loopback, cap
// connections per client address and memory, and its recipe, like
// README's, creates the env file (secrets) readable by root alone.
func TestDeploy_SystemdUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "fanout.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	env := map[string]string{}
	var keys []string
	for line := range strings.SplitSeq(unit, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "Environment":
			for _, kv := range strings.Fields(v) {
				name, value, _ := strings.Cut(kv, "=")
				env[name] = value
				keys = append(keys, kv)
			}
		case "MemoryMax":
			env[k] = v
		}
	}
	if host, _, err := net.SplitHostPort(env["FANOUT_ADMIN_ADDR"]); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("FANOUT_ADMIN_ADDR=%q, want a loopback address (pprof)", env["FANOUT_ADMIN_ADDR"])
	}
	if n, _ := strconv.Atoi(env["FANOUT_MAX_CONNS_PER_IP"]); n <= 0 {
		t.Errorf("FANOUT_MAX_CONNS_PER_IP=%q, want a per-address cap", env["FANOUT_MAX_CONNS_PER_IP"])
	}
	if env["MemoryMax"] == "" {
		t.Error("no MemoryMax: a flood may take all of the host's memory")
	}
	cmd := exec.Command(buildFanout(t), "-check-config")
	cmd.Env = keys
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("fanout -check-config with the unit's environment: %v %s", err, out)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	create := regexp.MustCompile(`[^>]>\s*/etc/fanout\.env`) // a new file gets the umask's 644
	for name, text := range map[string]string{"deploy/fanout.service": unit, "README.md": string(readme)} {
		if create.MatchString(text) {
			t.Errorf("%s creates /etc/fanout.env with '>': world-readable secrets", name)
		}
		if strings.Contains(text, "/etc/fanout.env") && !strings.Contains(text, "install -m 600 /dev/null /etc/fanout.env") {
			t.Errorf("%s names /etc/fanout.env without creating it with install -m 600", name)
		}
	}
}
