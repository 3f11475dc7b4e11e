package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns its pool.
func writeCert(t *testing.T, certFile, keyFile, name string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
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
		cmd := exec.Command("node", "testdata/interop/client.mjs", "wss://"+addr)
		cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+certFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node over wss: %v\n%s", err, out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
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
