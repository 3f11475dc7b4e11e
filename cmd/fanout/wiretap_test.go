package main

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gobwas/ws"
)

// wireTally counts the data frames a wireTap saw, and those with RSV1 set
// (permessage-deflate compressed), in each direction.
type wireTally struct {
	serverFrames, serverCompressed atomic.Int64
	clientFrames, clientCompressed atomic.Int64
}

// wireTap is a TCP relay to target on 127.0.0.1:0 that reads the frame
// headers going each way (after the HTTP upgrade) with gobwas/ws, so a test
// can assert what went on the wire, not what either side says it did. It
// returns the ws:// base URL of the relay.
func wireTap(t *testing.T, target string, tally *wireTally) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			go relay(client, srv, &tally.clientFrames, &tally.clientCompressed)
			go relay(srv, client, &tally.serverFrames, &tally.serverCompressed)
		}
	}()
	return "ws://" + ln.Addr().String()
}

// relay copies src to dst as it reads, skips the HTTP head, then counts
// data frames. Plain HTTP (no upgrade) is only copied.
func relay(src, dst net.Conn, frames, compressed *atomic.Int64) {
	defer dst.Close()
	defer src.Close()
	r := bufio.NewReader(io.TeeReader(src, dst))
	upgrade := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.Contains(strings.ToLower(line), "upgrade: websocket") {
			upgrade = true
		}
		if line == "\r\n" {
			break
		}
	}
	if !upgrade {
		_, _ = io.Copy(io.Discard, r)
		return
	}
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return
		}
		if !h.OpCode.IsControl() && h.OpCode != ws.OpContinuation {
			frames.Add(1)
			if h.Rsv&4 != 0 {
				compressed.Add(1)
			}
		}
		if _, err := io.CopyN(io.Discard, r, h.Length); err != nil {
			return
		}
	}
}
