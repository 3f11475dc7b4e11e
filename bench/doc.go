// Package bench is Fanout's load generator: it dials many WebSocket
// connections from spread loopback source addresses, drives a scenario
// (idle, broadcast) and reports latency percentiles from HDR histograms and
// the server's memory from /proc.
//
// Messages carry their send time and a sequence number in the first 16
// bytes, so every subscriber checks loss and order and measures delivery
// latency on the same clock as the publisher (same host).
package bench
