package tlsrec

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// openssl s_client, another TLS 1.3 stack, against this record layer with
// each cipher suite: lines echo both ways, and its KeyUpdate commands (k:
// update_not_requested, K: update_requested) are followed, answered
// (RFC 8446 4.6.3) and read across.
func TestConn_OpenSSLInterop(t *testing.T) {
	_, err := exec.LookPath("openssl")
	testutil.NeedTool(t, err == nil, "openssl (apt-get install openssl)")
	cert, _ := testCert(t)
	for _, id := range fuzzSuites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type echoed struct {
				line    string
				in, out []byte // secrets when it was echoed
				err     error
			}
			echoes := make(chan echoed, 16)
			go func() {
				s, err := accept(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err != nil {
					echoes <- echoed{err: err}
					return
				}
				defer s.nc.Close()
				for {
					b, err := s.readN(1)
					if err != nil {
						echoes <- echoed{err: err}
						return
					}
					line := b
					for b[0] != '\n' {
						if b, err = s.readN(1); err != nil {
							echoes <- echoed{err: err}
							return
						}
						line = append(line, b...)
					}
					if err := s.write([]byte("echo " + string(line))); err != nil {
						echoes <- echoed{err: err}
						return
					}
					echoes <- echoed{line: strings.TrimSpace(string(line)), in: s.rec.in.secret, out: s.rec.out.secret}
				}
			}()
			cmd := exec.Command("openssl", "s_client", "-connect", ln.Addr().String(), "-tls1_3", "-ciphersuites", tls.CipherSuiteName(id), "-no_ign_eof")
			stdin, _ := cmd.StdinPipe()
			// Both streams in one: s_client says KEYUPDATE on stderr.
			stdout, out := io.Pipe()
			var stderr testutil.SyncBuffer // everything, for failure messages
			cmd.Stdout, cmd.Stderr = io.MultiWriter(out, &stderr), io.MultiWriter(out, &stderr)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait(); out.Close() }()
			lines := make(chan string, 64)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			expect := func(want string) {
				t.Helper()
				timeout := time.After(10 * time.Second)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("openssl ended before %q; stderr: %s", want, stderr.String())
						}
						if strings.Contains(l, want) {
							return
						}
					case <-timeout:
						t.Fatalf("no %q from openssl; stderr: %s", want, stderr.String())
					}
				}
			}
			say := func(s string) echoed {
				t.Helper()
				if _, err := io.WriteString(stdin, s+"\n"); err != nil {
					t.Fatal(err)
				}
				e := <-echoes
				if e.err != nil || e.line != s {
					t.Fatalf("server got %q, %v", e.line, e.err)
				}
				expect("echo " + s)
				return e
			}
			expect("Cipher is " + tls.CipherSuiteName(id))
			first := say("hello")
			// k: the client moves to new keys and asks nothing.
			if _, err := io.WriteString(stdin, "k\n"); err != nil {
				t.Fatal(err)
			}
			expect("KEYUPDATE")
			second := say("after k")
			if bytes.Equal(first.in, second.in) || !bytes.Equal(first.out, second.out) {
				t.Fatal("k: the server should update its read keys only")
			}
			// K: the client asks the server to update its keys too.
			if _, err := io.WriteString(stdin, "K\n"); err != nil {
				t.Fatal(err)
			}
			expect("KEYUPDATE")
			third := say("after K")
			if bytes.Equal(second.in, third.in) || bytes.Equal(second.out, third.out) {
				t.Fatal("K: the server should update both keys")
			}
			say(fmt.Sprintf("still %d", id))
		})
	}
}
