// Package bench is Fanout's load generator: it dials many WebSocket
// connections from spread loopback source addresses, drives a scenario
// (idle, broadcast, echo, churn, slow) and reports latency percentiles from
// HDR histograms and the server's memory and CPU from /proc.
//
// Subscribers have no goroutine: a poller (edge-triggered) reads each
// readable socket on its own goroutines. Over wss each subscriber's crypto/tls client
// runs over its raw non-blocking fd (sock_linux.go), so it costs what
// crypto/tls keeps and nothing more.
//
// Messages carry their send time and a sequence number in the first 16
// bytes, so every subscriber checks loss and order and measures delivery
// latency on the same clock as the publisher (same host).
//
// Broadcast also runs over the channels protocol (Config.Channels, see
// channel.go): subscribers spread over K channels, publishers send through
// the HTTP API (Config.PublishURL) or WebSocket publish messages, and the
// data object carries the send time and the channel's sequence, checked
// per channel by every subscriber.
package bench
