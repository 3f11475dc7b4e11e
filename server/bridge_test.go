package server

import (
	"bufio"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Handler behind HTTPS holds three sockets per connection (the client's and
// a socket pair, bridge.go), and admission counts all three (finding 10 of
// issue 24): under an open-files limit of 400 (a child process: the limit
// is per process; ceiling 144), 140 clients get either a working
// WebSocket or 503 before the 101, never a 101 and then a closed socket.
func TestHandler_TLSBridgeCountsItsSockets(t *testing.T) {
	if os.Getenv("FANOUT_BRIDGE_CHILD") == "1" {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 400, Max: 400}); err != nil {
			t.Fatal(err)
		}
		r := &chat{}
		s, err := New(chatConfig(Config{}, r))
		if err != nil {
			t.Fatal(err)
		}
		r.hub = s.NewHub()
		hs := httptest.NewUnstartedServer(s.Handler())
		hs.StartTLS()
		os.Stdout.WriteString("url " + hs.URL + "\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent is done
		_ = s.Close()
		hs.Close()
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandler_TLSBridgeCountsItsSockets$")
	cmd.Env = append(os.Environ(), "FANOUT_BRIDGE_CHILD=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	var url string
	sc := bufio.NewScanner(stdout)
	for url == "" && sc.Scan() {
		url, _ = strings.CutPrefix(sc.Text(), "url ")
	}
	if url == "" {
		t.Fatal("the child printed no address")
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	var open []*websocket.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	refused := 0
	for i := range 140 {
		c, resp, err := d.Dial("wss"+strings.TrimPrefix(url, "https")+"/echo", nil)
		switch {
		case err == nil:
			open = append(open, c)
		case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("client %d: %v %v, want 101 or 503", i, resp, err)
		}
	}
	if len(open) == 0 || refused == 0 {
		t.Fatalf("%d upgraded, %d refused: want both", len(open), refused)
	}
	for i, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
			t.Fatalf("upgraded client %d of %d: write: %v", i, len(open), err)
		}
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "x" {
			t.Fatalf("upgraded client %d of %d (%d refused): echo %q %v", i, len(open), refused, p, err)
		}
	}
}
