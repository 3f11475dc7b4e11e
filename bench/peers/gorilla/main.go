// Command gorilla is the baseline peer: the hub most Go users would write
// with gorilla/websocket, one reader and one writer goroutine per
// connection and a buffered channel per client. /ws broadcasts every message
// to every client, /echo echoes. A client whose channel is full is dropped,
// as in gorilla's chat example. With -compression it negotiates
// permessage-deflate and broadcasts a PreparedMessage, which gorilla
// compresses once per message for all the clients that negotiated it.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

type message struct {
	op   int
	data []byte
	pm   *websocket.PreparedMessage // with -compression: built once, shared by every writer
}

type client struct {
	conn *websocket.Conn
	send chan message
}

type hub struct {
	mu      sync.Mutex
	clients map[*client]struct{}
}

func (h *hub) broadcast(m message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c.send <- m:
		default: // slow consumer
			delete(h.clients, c)
			close(c.send)
		}
	}
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.send)
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}

func main() {
	addr := flag.String("addr", ":8081", "listen address")
	queue := flag.Int("queue", 256, "per-client send channel capacity")
	compression := flag.Bool("compression", false, "negotiate permessage-deflate and broadcast PreparedMessages")
	flag.Parse()
	upgrader.EnableCompression = *compression
	h := &hub{clients: make(map[*client]struct{})}
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{conn: conn, send: make(chan message, *queue)}
		h.mu.Lock()
		h.clients[c] = struct{}{}
		h.mu.Unlock()
		go func() { // writer
			for m := range c.send {
				write := func() error { return conn.WriteMessage(m.op, m.data) }
				if m.pm != nil {
					write = func() error { return conn.WritePreparedMessage(m.pm) }
				}
				if err := write(); err != nil {
					break
				}
			}
			conn.Close()
		}()
		defer h.remove(c)
		for { // reader
			op, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			m := message{op: op, data: data}
			if *compression {
				if m.pm, err = websocket.NewPreparedMessage(op, data); err != nil {
					return
				}
			}
			h.broadcast(m)
		}
	})
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			op, data, err := conn.ReadMessage()
			if err != nil || conn.WriteMessage(op, data) != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("gorilla hub listening on %s", ln.Addr()) // port 0: the one the kernel chose
	log.Fatal(http.Serve(ln, nil))
}
