package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Plain HTTP on Serve's listener reaches HTTPHandler, keep-alive included,
// with a body that arrived with the head; upgrades on the same port still
// work; the HTTP connection counts against MaxConns until it closes.
func TestHTTPHandler_SharesTheListener(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxConns: 3, HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})}
	s, addr := runServer(t, cfg)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	for i, req := range []string{
		"GET /page HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	} {
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := []string{"GET /page ", "POST /api hello"}[i]
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	if live := s.Stats().Live; live != 1 {
		t.Fatalf("live %d with one HTTP connection, want 1", live)
	}
	ws := dialGorilla(t, "ws://"+addr+"/echo")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still ws")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "still ws" {
		t.Fatalf("echo %q %v", p, err)
	}
	nc.Close()
	eventually(t, 5*time.Second, func() error {
		if live := s.Stats().Live; live != 1 {
			return fmt.Errorf("live %d after the HTTP connection closed, want 1", live)
		}
		return nil
	})
}

// Over TLS, plain HTTPS requests reach HTTPHandler too.
func TestHTTPHandler_TLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	cfg := Config{
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}},
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secure page") }),
	}
	_, addr := runServer(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	for range 2 { // the second request reuses the connection
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "secure page" {
			t.Fatalf("got %q", body)
		}
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, _, err := d.Dial("wss://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("x"))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "x" {
		t.Fatalf("wss echo %q %v", p, err)
	}
}
