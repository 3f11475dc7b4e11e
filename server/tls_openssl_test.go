package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// openssl s_client, another TLS 1.3 stack, against the server's record
// layer: it upgrades, asks for a KeyUpdate (K), which the server must
// answer with its own before its next record (RFC 8446 4.6.3; -msg shows
// it arrive), and reads the server's pings under the new keys; then it updates its own keys (k)
// and sends bytes that are no frame, which the server must read under
// those keys to answer them with a close frame 1002, and end the
// connection with close_notify (RFC 8446 6.1), not a bare FIN.
func TestTLS_OpenSSLKeyUpdate(t *testing.T) {
	_, err := exec.LookPath("openssl")
	testutil.NeedTool(t, err == nil, "openssl (apt-get install openssl)")
	cert, _ := testCert(t)
	_, addr := runServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, PingInterval: 30 * time.Millisecond,
		IdleTimeout: 5 * time.Second, CloseTimeout: 500 * time.Millisecond})
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-tls1_3", "-no_ign_eof", "-msg")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out testutil.SyncBuffer // stdout and stderr: s_client says KEYUPDATE on stderr
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	after := func(from int, want string) int { // waits for want in the output past from
		t.Helper()
		var at int
		eventually(t, 10*time.Second, func() error {
			s := out.String()
			if at = strings.Index(s[min(from, len(s)):], want); at < 0 {
				return fmt.Errorf("no %q in openssl's output after byte %d:\n%s", want, from, s)
			}
			at += from + len(want)
			return nil
		})
		return at
	}
	n := after(0, "Cipher is TLS_")
	if _, err := io.WriteString(stdin, upgradeRequest("/echo")); err != nil {
		t.Fatal(err)
	}
	n = after(n, "101 Switching Protocols")
	if _, err := io.WriteString(stdin, "K\n"); err != nil {
		t.Fatal(err)
	}
	n = after(n, "KEYUPDATE")
	n = after(n, "<<< TLS 1.3, Handshake [length 0005], KeyUpdate") // the server's answer (-msg)
	n = after(n, "\x89\x00")                                        // then a ping, under its new keys
	if _, err := io.WriteString(stdin, "k\n"); err != nil {
		t.Fatal(err)
	}
	n = after(n, "KEYUPDATE")
	if _, err := io.WriteString(stdin, "not a frame\n"); err != nil {
		t.Fatal(err)
	}
	n = after(n, "\x03\xeareserved bits set") // close 1002: the bytes were read under the client's new keys
	after(n, "<<< TLS 1.3, Alert [length 0002], warning close_notify")
}
