package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
	"github.com/gorilla/websocket"
)

// A chat room: every message goes to every member, sender included. The
// events API decides who joins (OnConnect may reject with a status and a
// reason) and sees each close with its code.
func Example_chatServer() {
	var room *server.Hub
	closed := make(chan frame.CloseCode, 1)
	s, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, r *server.Request) error {
			if r.Query().Get("name") == "" {
				return server.Reject(http.StatusBadRequest, "pick a name with ?name=")
			}
			c.SetData(r.Query().Get("name"))
			return room.Join(c)
		},
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) {
			room.Broadcast(frame.OpText, fmt.Appendf(nil, "%s: %s", c.Data(), data))
		},
		OnClose: func(c *server.Conn, code frame.CloseCode, reason server.CloseReason) {
			closed <- code
		},
		OnError: func(c *server.Conn, err error) { fmt.Println("error:", err) },
	})
	if err != nil {
		panic(err)
	}
	room = s.NewHub()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	<-s.Ready()
	defer s.Shutdown(context.Background())

	_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/chat", nil)
	fmt.Println("without a name:", resp.StatusCode, err)

	ann, _, _ := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/chat?name=ann", nil)
	_ = ann.WriteMessage(websocket.TextMessage, []byte("hello"))
	_, msg, _ := ann.ReadMessage()
	fmt.Println(string(msg))
	_ = ann.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	fmt.Println("closed with", <-closed)
	ann.Close()
	// Output:
	// without a name: 400 websocket: bad handshake
	// ann: hello
	// closed with 1000 normal
}

// Mounting on an existing net/http mux, next to other routes: the hijacked
// connection joins the server's poller, owning no goroutine once upgraded.
func ExampleServer_Handler() {
	s, err := server.New(server.Config{
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) {
			_ = c.Send(op, []byte(strings.ToUpper(string(data))))
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.Handle("/ws", s.Handler())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	defer s.Shutdown(context.Background())

	resp, _ := http.Get("http://" + ln.Addr().String() + "/health")
	fmt.Println("/health:", resp.StatusCode)
	resp.Body.Close()
	c, _, _ := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("shout"))
	_, msg, _ := c.ReadMessage()
	fmt.Println("/ws:", string(msg))
	// Output:
	// /health: 200
	// /ws: SHOUT
}
