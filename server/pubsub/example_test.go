package pubsub_test

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/fanout-ws/fanout/frame"
	"github.com/fanout-ws/fanout/server"
	"github.com/fanout-ws/fanout/server/pubsub"
	"github.com/gorilla/websocket"
)

// Publishing from a backend: clients subscribe to channels, the backend
// publishes with Node.Publish (or over HTTP through APIHandler). Each
// message is serialized once and carries its offset in the channel, which a
// client can resume from after a reconnect.
func ExampleNode_Publish() {
	node, err := pubsub.New(pubsub.Config{})
	if err != nil {
		panic(err)
	}
	s, err := server.New(server.Config{
		OnConnect: func(c *server.Conn, r *server.Request) error {
			return node.Subscribe(c, r.Query().Get("channel"), nil)
		},
		OnMessage: func(c *server.Conn, op frame.OpCode, data []byte) { node.HandleControl(c, op, data) },
	})
	if err != nil {
		panic(err)
	}
	if err := node.Start(s); err != nil {
		panic(err)
	}
	defer node.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	<-s.Ready()
	defer s.Shutdown(context.Background())

	c, _, _ := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws?channel=prices", nil)
	defer c.Close()
	_, ack, _ := c.ReadMessage() // {"type":"subscribed",...}
	fmt.Println(strings.Contains(string(ack), `"type":"subscribed"`))

	p, _ := node.Publish("prices", []byte(`{"BTC":97000}`))
	fmt.Println("delivered to", p.Delivered, "at offset", p.Offset)
	_, msg, _ := c.ReadMessage()
	fmt.Println(string(msg))
	// Output:
	// true
	// delivered to 1 at offset 1
	// {"type":"message","channel":"prices","offset":1,"data":{"BTC":97000}}
}
