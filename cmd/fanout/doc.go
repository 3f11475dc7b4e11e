// Command fanout runs a Fanout WebSocket server: /ws is a chat room (every
// message goes to every client, sender included) or, with ?channel=, a set of
// channel subscriptions driven by JSON control messages; /echo sends each
// message back to its sender. The same port serves the demo page at / and
// the HTTP publish API at /api/.
//
// How it is put together:
//
//	flags.go   flags and FANOUT_* variables → server.Config, pubsub.Config
//	           and the command's own options; -print-config from the flag set
//	main.go    run: check the configuration, load TLS, the broker (Redis with
//	           -broker), start the server and the channels node (newChatServer:
//	           the routes), the admin listener, then serve until a signal and
//	           shut down gracefully
//	web.go     the embedded demo page and its client, fanout.js
package main
