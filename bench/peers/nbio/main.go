// Command nbio is a benchmark peer on github.com/lesismal/nbio, the Go
// epoll WebSocket engine, written the way its own examples are: an
// nbhttp.Engine with a websocket.Upgrader whose OnMessage handler runs on
// nbio's pool. /ws sends every message to every client (the sender
// included) from a mutex-guarded set, /echo echoes. A client more than
// 1 MiB behind is closed by nbio (MaxWriteBufferSize), as Fanout evicts a
// client whose send queue passes 1 MiB.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// room is the set of /ws clients.
type room struct {
	mu      sync.Mutex
	clients map[*websocket.Conn]struct{}
}

func (r *room) broadcast(mt websocket.MessageType, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clients {
		_ = c.WriteMessage(mt, data) // a failed client is removed by OnClose
	}
}

func (r *room) upgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.OnOpen(func(c *websocket.Conn) {
		r.mu.Lock()
		r.clients[c] = struct{}{}
		r.mu.Unlock()
	})
	u.OnMessage(func(_ *websocket.Conn, mt websocket.MessageType, data []byte) { r.broadcast(mt, data) })
	u.OnClose(func(c *websocket.Conn, _ error) {
		r.mu.Lock()
		delete(r.clients, c)
		r.mu.Unlock()
	})
	return u
}

func echoUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) { _ = c.WriteMessage(mt, data) })
	return u
}

// upgrade serves u's upgrades; nbio reads the connection from then on.
func upgrade(u *websocket.Upgrader) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if _, err := u.Upgrade(w, req, nil); err != nil {
			log.Printf("upgrade: %v", err)
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8084", "listen address")
	flag.Parse()
	r := &room{clients: make(map[*websocket.Conn]struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", upgrade(r.upgrader()))
	mux.HandleFunc("/echo", upgrade(echoUpgrader()))
	var bound net.Addr
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:            "tcp",
		Addrs:              []string{*addr},
		Handler:            mux,
		MaxWriteBufferSize: 1 << 20,
		MaxLoad:            1 << 20,
		Listen: func(network, addr string) (net.Listener, error) { // port 0: note the one the kernel chose
			ln, err := net.Listen(network, addr)
			if err == nil {
				bound = ln.Addr()
			}
			return ln, err
		},
	})
	if err := engine.Start(); err != nil {
		log.Fatalf("nbio peer: %v", err)
	}
	log.Printf("nbio peer listening on %s", bound)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = engine.Shutdown(shut)
}
