// Command sockmem measures what the kernel spends on idle TCP connections
// and on a few bytes queued in each, on loopback: the figures behind
// deploy/TUNING.md. Both ends live in this process, so -pairs is bounded
// by half its open-files limit.
//
//	go run ./deploy/sockmem -pairs 9000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	pairs := flag.Int("pairs", 9000, "connections to open (two sockets each)")
	queued := flag.Int("queued", 1024, "bytes then written to each connection and left unread")
	flag.Parse()
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if need := uint64(2**pairs + 32); rl.Cur < need {
		log.Fatalf("-pairs %d needs %d open files; the limit is %d", *pairs, need, rl.Cur)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	before := sample()
	clients, servers := make([]net.Conn, *pairs), make([]net.Conn, *pairs)
	for i := range clients {
		if clients[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			log.Fatal(err)
		}
		if servers[i], err = ln.Accept(); err != nil {
			log.Fatal(err)
		}
	}
	idle := sample()
	msg := make([]byte, *queued)
	for _, c := range clients {
		if _, err := c.Write(msg); err != nil {
			log.Fatal(err)
		}
	}
	full := sample()
	n := float64(2 * *pairs)
	fmt.Printf("sockets: %d (%d connections, both ends)\n", 2**pairs, *pairs)
	fmt.Printf("idle: kernel objects +%.0f B per socket, TCP buffer memory +%.0f B per socket\n",
		(idle.slab-before.slab)/n, (idle.tcpMem-before.tcpMem)/n)
	fmt.Printf("%d B queued unread per connection: TCP buffer memory +%.0f B per connection (%.1f pages of tcp_mem per 1,000)\n",
		*queued, (full.tcpMem-idle.tcpMem)/float64(*pairs), (full.tcpMem-idle.tcpMem)/4096/float64(*pairs)*1000)
}

type mem struct{ slab, tcpMem float64 } // bytes

// sample reads the kernel objects in use (the sum over /proc/slabinfo of
// active objects times their size: unlike meminfo's Slab it ignores free
// objects kept in slabs) and the TCP buffer memory of /proc/net/sockstat.
func sample() mem {
	var m mem
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		log.Fatalf("%v (reading it needs root)", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		w := strings.Fields(line)
		if len(w) < 4 || strings.HasPrefix(w[0], "#") {
			continue
		}
		active, err1 := strconv.ParseFloat(w[1], 64)
		size, err2 := strconv.ParseFloat(w[3], 64)
		if err1 == nil && err2 == nil {
			m.slab += active * size
		}
	}
	m.tcpMem = field("/proc/net/sockstat", "TCP:", 10) * float64(os.Getpagesize())
	return m
}

// field returns the n-th word of the line of path that starts with prefix.
func field(path, prefix string, n int) float64 {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if w := strings.Fields(s.Text()); len(w) > n && w[0] == prefix {
			v, err := strconv.ParseFloat(w[n], 64)
			if err != nil {
				log.Fatal(err)
			}
			return v
		}
	}
	log.Fatalf("%s: no %q line", path, prefix)
	return 0
}
