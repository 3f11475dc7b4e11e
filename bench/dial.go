package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// dialer opens connections from loopback source addresses spread over
// 127.0.0.2.. so that one (source, destination, port) tuple never runs out
// of ephemeral ports.
type dialer struct {
	sources int      // 127.0.0.2 .. 127.0.0.(1+sources)
	addrs   []net.IP // or these
	tls     *tls.Config
	extra   string // request header lines beside the upgrade's own: Config.Headers and the permessage-deflate offer
}

// dial connects to target and completes the WebSocket handshake. It returns
// the connection and any bytes that followed the 101 (frames the server sent
// at once).
func (d dialer) dial(ctx context.Context, target string, index int) (net.Conn, []byte, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, nil, err
	}
	nd := d.netDialer(index)
	nc, err := nd.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme == "wss" {
		cfg := d.tls.Clone()
		cfg.ServerName = u.Hostname()
		tc := tls.Client(&sock{Conn: nc}, cfg) // a subscriber detaches it (see detach)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	rest, err := handshake(nc, u, d.extra)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, rest, nil
}

// netDialer dials TCP from connection index's source address.
func (d dialer) netDialer(index int) net.Dialer {
	// No TCP keepalive: the server pings (Go probes every 15 s by default,
	// a million idle sockets busy with probes and their ACKs).
	nd := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	switch {
	case len(d.addrs) > 0:
		nd.LocalAddr = &net.TCPAddr{IP: d.addrs[index%len(d.addrs)]}
	case d.sources > 0:
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+index%d.sources))}
	}
	return nd
}

// deflateOffer is what browsers offer: permessage-deflate (RFC 7692), the
// client's window at the server's choice.
const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

// handshake sends an upgrade request with the header lines of extra and
// reads the 101 (RFC 6455 4.1).
func handshake(nc net.Conn, u *url.URL, extra string) ([]byte, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write([]byte(req)); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 1024)
	status, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101 ")) {
		return nil, fmt.Errorf("bench: upgrade refused: %s", bytes.TrimSpace(status))
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
	}
	if br.Buffered() == 0 {
		return nil, nil
	}
	rest, _ := br.Peek(br.Buffered())
	return bytes.Clone(rest), nil
}

// headerBytes is the message prefix: send time (unix ns) and sequence.
const headerBytes = 16

func hostOf(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	return u.Host
}

func newDialer(cfg Config) dialer {
	d := dialer{sources: cfg.SourceIPs, tls: &tls.Config{InsecureSkipVerify: cfg.Insecure}}
	for _, h := range cfg.Headers {
		d.extra += h + "\r\n"
	}
	if cfg.Deflate {
		d.extra += deflateOffer
	}
	if cfg.CAFile != "" {
		if pem, err := os.ReadFile(cfg.CAFile); err == nil {
			d.tls.RootCAs = x509.NewCertPool()
			d.tls.RootCAs.AppendCertsFromPEM(pem)
		}
	}
	for _, a := range cfg.SourceAddrs {
		if ip := net.ParseIP(a); ip != nil {
			d.addrs = append(d.addrs, ip)
		}
	}
	return d
}
