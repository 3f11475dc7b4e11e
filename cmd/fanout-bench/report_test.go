package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
)

// smokeArgs is a short broadcast against url.
func smokeArgs(url string, extra ...string) []string {
	return append([]string{"-url", url, "-conns", "100", "-duration", "2s", "-settle", "0s", "-drain", "1s",
		"-msg-rate", "20", "-server-pid", strconv.Itoa(os.Getpid()), "-label", "smoke"}, extra...)
}

// Progress lines reach stderr when it is a pipe (a buffer here), once a
// second with the live figures; -quiet silences them.
func TestReport_ProgressUnderPipe(t *testing.T) {
	url := chatServer(t) + "/ws"
	var stderr bytes.Buffer
	if err := run(context.Background(), smokeArgs(url), &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err)
	}
	var measured bool
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, " measure ") {
			measured = true
			for _, want := range []string{"connected 100/100", "sent ", "delivered ", "/s", "p50 ", "p99 ", "server ", "cores", "MiB"} {
				if !strings.Contains(line, want) {
					t.Errorf("progress line %q lacks %q", line, want)
				}
			}
		}
	}
	if !measured {
		t.Fatalf("no progress line while measuring in %q", stderr.String())
	}
	stderr.Reset()
	if err := run(context.Background(), smokeArgs(url, "-quiet"), &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Fatalf("-quiet printed %q", stderr.String())
	}
}

// The JSON document has snake_case keys with units, the series, the HDR
// percentiles, the command line and the environment, and neither the API
// key given by flag nor the one from the environment.
func TestReport_JSONHasNoSecret(t *testing.T) {
	const flagKey, envKey = stubKey, "env-secret-8d1e7b"
	t.Setenv("FANOUT_API_KEY", envKey)
	wsURL, publishURL := newChannelStub(t)
	out := filepath.Join(t.TempDir(), "r.json")
	args := smokeArgs(wsURL, "-channels", "4", "-publish-url", publishURL, "-api-key", flagKey, "-json", out)
	if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(flagKey)) || bytes.Contains(b, []byte(envKey)) {
		t.Fatalf("the JSON carries an API key:\n%s", b)
	}
	for _, key := range []string{`"command_line"`, `"environment"`, `"[redacted]"`, `"p99_ms"`, `"p99_9_ms"`, `"deliveries_per_s"`,
		`"percentiles"`, `"series"`, `"t_s"`, `"server_cpu_cores"`, `"rss_per_conn_bytes"`, `"cpu_model"`, `"FANOUT_API_KEY": "[redacted]"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("the JSON lacks %s", key)
		}
	}
	for _, goName := range []string{`"P99us"`, `"DeliveriesPS"`, `"Config"`, `"APIKey"`} {
		if bytes.Contains(b, []byte(goName)) {
			t.Errorf("the JSON still has the Go field name %s", goName)
		}
	}
	var doc document
	if err := json.Unmarshal(b, &doc); err != nil || doc.Environment.MemoryBytes < 1<<20 || doc.Environment.OpenFilesLimit == 0 {
		t.Errorf("environment %+v (%v)", doc.Environment, err)
	}
}

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"separate value", "fanout-bench -api-key abc -conns 5", "fanout-bench -api-key [redacted] -conns 5"},
		{"joined value", "fanout-bench --api-key=abc", "fanout-bench --api-key=[redacted]"},
		{"url password", "fanout-bench -url ws://u:pw@127.0.0.1/ws", "fanout-bench -url ws://u:xxxxx@127.0.0.1/ws"},
		{"nothing secret", "fanout-bench -conns 5 -label key", "fanout-bench -conns 5 -label key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(redactArgs(strings.Fields(tc.in)), " "); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := redactArgs([]string{"-server-cmd", "fanout -api-key abc"}); got[1] != "fanout -api-key [redacted]" {
		t.Fatalf("server command not redacted: %q", got)
	}
}

// bench/plot (a module of its own) draws the generator's -json documents
// as decodable PNGs: the latency, deliveries and p99 charts, and for idle
// the RSS against connections; several documents go on the same charts.
func TestReport_PlotsArePNG(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/plot")
	}
	goTool, err := exec.LookPath("go")
	testutil.NeedTool(t, err == nil, "go")
	plotter := filepath.Join(t.TempDir(), "plot")
	if out, err := exec.Command(goTool, "build", "-C", "../../bench/plot", "-o", plotter, ".").CombinedOutput(); err != nil {
		t.Fatalf("build bench/plot: %v\n%s", err, out)
	}
	url := chatServer(t) + "/ws"
	for _, tc := range []struct {
		scenario string
		files    []string
	}{
		{"broadcast", []string{"latency.png", "deliveries.png", "p99.png"}},
		{"idle", []string{"rss.png"}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			dir, doc := t.TempDir(), filepath.Join(t.TempDir(), "r.json")
			args := smokeArgs(url, "-scenario", tc.scenario, "-rate", "50", "-json", doc)
			if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(plotter, "-o", dir, doc, doc).CombinedOutput(); err != nil {
				t.Fatalf("plot: %v\n%s", err, out)
			}
			checkPNGs(t, dir, tc.files)
		})
	}
}

// With -metrics-url, the server's writev and frame counters over the
// window give writes per delivery (a real server with its Prometheus
// registry served on loopback).
func TestReport_WritePathFromMetrics(t *testing.T) {
	t.Run("ws", func(t *testing.T) { checkWritePath(t, nil, "") })
	t.Run("wss", func(t *testing.T) { tc, ca := testTLS(t); checkWritePath(t, tc, ca) })
}

// checkWritePath runs a broadcast against a server (wss with tc) whose
// metrics are served on loopback, and checks the write path the generator
// read from them. TLS records are reported over wss exactly when the
// server counts them, and never over ws.
func checkWritePath(t *testing.T, tc *tls.Config, ca string) {
	reg := prometheus.NewRegistry()
	var hub *server.Hub
	srv, err := server.New(server.Config{
		TLS:        tc,
		Registerer: reg,
		OnConnect:  func(c *server.Conn, _ *server.Request) error { return hub.Join(c) },
		OnMessage:  func(_ *server.Conn, op frame.OpCode, data []byte) { hub.Broadcast(op, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	hub = srv.NewHub()
	url := "ws://" + serve(t, srv) + "/ws"
	if tc != nil {
		url = "wss" + url[2:]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go func() { _ = admin.Serve(ln) }()
	t.Cleanup(func() { _ = admin.Close() })
	out := filepath.Join(t.TempDir(), "r.json")
	args := smokeArgs(url, "-metrics-url", "http://"+ln.Addr().String()+"/metrics", "-json", out, "-ca-file", ca)
	var stdout bytes.Buffer
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var doc document
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &doc); err != nil || doc.Result == nil || doc.Result.Writes == nil {
		t.Fatalf("no write path in %s (%v)", b, err)
	}
	w, r := doc.Result.Writes, doc.Result
	// Every delivery is a frame written; the publisher's copies are frames
	// the generator does not count as deliveries.
	if w.WriteSyscalls <= 0 || w.FramesOut < r.Deliveries || w.FramesPerWrite < 1 || w.WritesPerDelivery <= 0 || w.FramesPerWriteP50 < 1 {
		t.Fatalf("write path %+v for %d deliveries", *w, r.Deliveries)
	}
	page, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(page.Body)
	page.Body.Close()
	counted := tc != nil && bytes.Contains(metrics, []byte("\nfanout_tls_records_out_total "))
	if counted != (w.RecordsOut > 0) || counted && (w.RecordsPerWrite <= 0 || !strings.Contains(stdout.String(), "records/write")) {
		t.Fatalf("wss: %v, server counts TLS records: %v; write path %+v", tc != nil, counted, *w)
	}
	if tc == nil && strings.Contains(string(b), "tls_records") {
		t.Fatalf("TLS records over ws: %+v", *w)
	}
	for _, want := range []string{"writes/delivery", "frames/write (p50 "} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("no %q in %q", want, stdout.String())
		}
	}
}

// The ceiling search raises the rate while the server keeps up and
// reports the last rate kept up. Whether a phase keeps up depends on the
// machine (a stall under -race can hold a publisher back), so the test
// checks the search's rule against the verdicts it printed.
func TestCeiling_RaisesWhileKeptUp(t *testing.T) {
	url := chatServer(t) + "/ws"
	var stdout bytes.Buffer
	args := smokeArgs(url, "-conns", "50", "-duration", "1s", "-ceiling", "-ceiling-factor", "2", "-ceiling-max-phases", "2")
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var rates []float64
	var kept []bool
	for line := range strings.Lines(stdout.String()) {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.TrimSpace(cells[1]) != "smoke" {
			continue
		}
		rate, err := strconv.ParseFloat(strings.TrimSpace(cells[4]), 64)
		if err != nil {
			t.Fatalf("rate cell in %q: %v", line, err)
		}
		rates = append(rates, rate)
		kept = append(kept, strings.TrimSpace(cells[len(cells)-2]) == "yes")
	}
	if len(rates) != 2 || rates[0] != 20 {
		t.Fatalf("want two phases from 20 msg/s:\n%s", stdout.String())
	}
	want := "ceiling: no rate kept up"
	switch {
	case kept[0] && rates[1] != 40, !kept[0] && rates[1] >= 20:
		t.Fatalf("phase 2 at %g after phase 1 kept up = %v:\n%s", rates[1], kept[0], stdout.String())
	case kept[1]:
		want = fmt.Sprintf("ceiling: %g msg/s per publisher (%g deliveries/s offered) kept up", rates[1], rates[1]*50)
	case kept[0]:
		want = "ceiling: 20 msg/s per publisher (1000 deliveries/s offered) kept up"
	}
	if !strings.Contains(stdout.String(), want) {
		t.Fatalf("no %q in:\n%s", want, stdout.String())
	}
}

// Closed-loop echo keeps one message in flight per connection and gets
// every reply back.
func TestEcho_ClosedLoop(t *testing.T) {
	res, _ := runJSON(t, "-url", chatServer(t)+"/echo", "-scenario", "echo", "-closed-loop", "-conns", "10",
		"-duration", "1s", "-settle", "0s", "-drain", "1s", "-quiet")
	if res.Sent < 100 || res.Missing != 0 || res.Deliveries != res.Sent || res.P99ms <= 0 {
		t.Fatalf("closed-loop echo: sent %d, replies %d, missing %d, p99 %v ms", res.Sent, res.Deliveries, res.Missing, res.P99ms)
	}
}

// checkPNGs decodes each file in dir as a PNG of a useful size.
func checkPNGs(t *testing.T, dir string, files []string) {
	t.Helper()
	for _, name := range files {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
			t.Fatalf("%s is %v", name, b)
		}
	}
}
