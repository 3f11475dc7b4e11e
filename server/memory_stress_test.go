//go:build !race

package server

import (
	"crypto/tls"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// BenchmarkIdleConnMemory holds 9,000 idle upgraded connections (client and
// server in one process, under the 20,000 open-files cap) and reports the
// server-side Go heap per connection after GC. With FANOUT_HEAPPROFILE=file
// it writes the in-use heap profile while the connections are open, which
// says where each byte goes (go tool pprof -sample_index=inuse_space).
func BenchmarkIdleConnMemory(b *testing.B) {
	b.Run("tls=false", func(b *testing.B) { benchIdleConnMemory(b, 9000, false) })
	// wss: the client's crypto/tls state lives in this process too, so
	// the per-connection figure is an upper bound; the heap profile tells
	// the server's part (tlsrec, Conn) from the client's (crypto/tls).
	b.Run("tls=true", func(b *testing.B) { benchIdleConnMemory(b, 3000, true) })
}

func benchIdleConnMemory(b *testing.B, conns int, wss bool) {
	if os.Getenv("FANOUT_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, for an exact breakdown
	}
	for b.Loop() {
		cfg := Config{OnConnect: func(*Conn, *Request) error { return nil }}
		var clientTLS *tls.Config
		if wss {
			cert, pool := testCert(b)
			cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
		}
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = s.Serve(ln) }()
		<-s.Ready()
		clients := make([]net.Conn, 0, conns)
		// The client sockets live in this process too: measure them first.
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for range conns {
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if wss {
				nc = tls.Client(nc, clientTLS)
			}
			if _, err := nc.Write([]byte(upgradeRequest("/"))); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 512)
			if _, err := nc.Read(buf); err != nil { // the 101
				b.Fatal(err)
			}
			clients = append(clients, nc)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if path := os.Getenv("FANOUT_HEAPPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		// Client side: a *net.TCPConn with its netFD and addresses, and
		// the 512-byte buffer above is garbage; both ends' kernel socket
		// memory is not Go heap.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(conns), "heap-B/conn(both-ends)")
		b.ReportMetric(float64(after.Sys-before.Sys)/float64(conns), "sys-B/conn(both-ends)")
		for _, nc := range clients {
			nc.Close()
		}
		_ = s.Close()
	}
}
