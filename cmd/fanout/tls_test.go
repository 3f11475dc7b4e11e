package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/servertest"
	"github.com/fanout-ws/fanout/internal/testutil"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/gorilla/websocket"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns its pool.
func writeCert(t *testing.T, certFile, keyFile, name string) *x509.CertPool {
	cert, pool := testutil.Cert(t, name)
	testutil.WriteCert(t, cert, certFile, keyFile)
	return pool
}

// wss with a reload on SIGHUP: new handshakes get the new certificate, the
// open connection keeps working; Node's ws connects with the CA file.
func TestTLS_ReloadAndNode(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, "first")
	ctx, cancel := context.WithCancel(context.Background())
	addrs, done := startRun(t, ctx, "-tls-cert", certFile, "-tls-key", keyFile)
	addr := addrs.addr
	defer func() { cancel(); <-done }()
	dial := func(pool *x509.CertPool) (*websocket.Conn, error) {
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
		c, _, err := d.Dial("wss://"+addr+"/echo", nil)
		return c, err
	}
	old, err := dial(pool1)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	_, nodeErr := exec.LookPath("node")
	_, wsErr := os.Stat("testdata/interop/node_modules/ws")
	if nodeErr == nil && wsErr == nil {
		// TLS 1.3 (the server's own record layer), then TLS 1.2 (crypto/tls).
		for _, flag := range []string{"--tls-min-v1.3", "--tls-max-v1.2"} {
			cmd := exec.Command("node", flag, "testdata/interop/client.mjs", "wss://"+addr)
			cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+certFile)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node %s over wss: %v\n%s", flag, err, out)
			}
			t.Logf("node %s: %s", flag, bytes.TrimSpace(out))
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("node and its ws package are required in CI")
	}

	pool2 := writeCert(t, certFile, keyFile, "second")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error { // the reload runs on its own goroutine
		c, err := dial(pool2)
		if err != nil {
			return fmt.Errorf("the new certificate is not served after SIGHUP: %w", err)
		}
		c.Close()
		return nil
	})
	if err := old.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	_ = old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := old.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("connection opened before the reload: %q %v", p, err)
	}
}

// Python's websockets runs the whole interop script over wss, with TLS 1.3
// (records sealed by the server's own record layer) and TLS 1.2
// (crypto/tls), the HTTP API over the same TLS port included.
func TestTLS_Python(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-websockets installs
	err := exec.Command(py, "-c", "import websockets").Run()
	testutil.NeedTool(t, err == nil, "apt-get install python3-websockets")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "python")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.3", "1.2"} { // a server each: the script expects a fresh channel
		app, err := newChatServer(server.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, pubsub.Config{}, testAPIKey)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(app.node.Close)
		addr := servertest.Serve(t, app.srv)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "interop", "client.py"), "wss://"+addr, testAPIKey, v)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("python over TLS %s: %v\n%s", v, err, out)
		}
		t.Logf("TLS %s: %s", v, bytes.TrimSpace(out))
		waitIdle(t, app.srv)
		// Only TLS 1.3 connections leave crypto/tls for the server's record layer.
		if st := app.srv.Stats(); (st.TLSRecords > 0) != (v == "1.3") {
			t.Fatalf("TLS %s: %d records sealed by the server's record layer", v, st.TLSRecords)
		}
	}
}
