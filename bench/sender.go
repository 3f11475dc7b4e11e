package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fanout-ws/fanout/frame"
)

// fatalError ends the run: retrying cannot help (wrong key, bad request).
type fatalError struct{ error }

func (e fatalError) Unwrap() error { return e.error }

// wsSender publishes over a WebSocket: binary frames to the room, or
// {"op":"publish"} control messages in channel mode. Writes are not
// acknowledged one by one; a reader counts the server's error replies.
type wsSender struct {
	cfg     Config
	p       int
	target  string
	nc      net.Conn
	buf     []byte
	payload []byte
	refused atomic.Int64 // channel mode: {"type":"error"} replies
	read    sync.WaitGroup
	once    sync.Once
}

func newWSSender(ctx context.Context, cfg Config, p int) (*wsSender, error) {
	target := cfg.URLs[p%len(cfg.URLs)]
	nc, rest, err := newDialer(cfg).dial(ctx, target, 1000+p)
	if err != nil {
		return nil, fmt.Errorf("bench: publisher %d for %s: %w", p, hostOf(target), err)
	}
	s := &wsSender{cfg: cfg, p: p, target: target, nc: nc, payload: make([]byte, cfg.Size)}
	if cfg.JSONPayload {
		fillJSON(s.payload[headerBytes:])
	}
	s.read.Add(1)
	go s.readReplies(rest)
	return s, nil
}

// readReplies drains what the server sends the publisher (the room's
// broadcasts, publish acknowledgements) and counts error replies.
func (s *wsSender) readReplies(rest []byte) {
	defer s.read.Done()
	p := frame.Parser{Role: frame.ClientSide, MaxMessageBytes: 16 << 20, Deflate: s.cfg.Deflate}
	buf := make([]byte, 32<<10)
	data := rest
	for {
		for len(data) > 0 {
			m, n, err := p.Parse(data)
			data = data[n:]
			if err != nil {
				return
			}
			if m.Op == frame.OpText && s.cfg.Channels > 0 {
				if t, ok := jsonString(m.Payload, "type"); ok && string(t) == "error" {
					s.refused.Add(1)
				}
			}
		}
		n, err := s.nc.Read(buf)
		if err != nil {
			return
		}
		data = buf[:n]
	}
}

func (s *wsSender) send(items []item) error {
	s.buf = s.buf[:0]
	key := [4]byte{0x5a, 0x17, 0x3c, byte(s.p)}
	for _, it := range items {
		if s.cfg.Channels == 0 {
			stamp(s.payload, joinSeq(it.stream, it.seq))
			s.buf = frame.AppendClientFrame(s.buf, frame.OpBinary, s.payload, key)
			continue
		}
		s.payload = appendPublishOp(s.payload[:0], s.cfg.channelName(it.stream), time.Now().UnixMicro(), it.seq, s.cfg.Size)
		s.buf = frame.AppendClientFrame(s.buf, frame.OpText, s.payload, key)
	}
	if _, err := s.nc.Write(s.buf); err != nil {
		return fatalError{fmt.Errorf("bench: publisher %d to %s: %w", s.p, hostOf(s.target), err)}
	}
	return nil
}

func (s *wsSender) close() {
	s.once.Do(func() {
		s.nc.Close()
		s.read.Wait()
	})
}

// apiSender publishes through the HTTP API over one keep-alive connection,
// one request at a time (it waits for each response), so one publisher
// manages at most 1/round-trip requests per second. Batch > 1 sends a JSON
// array of messages in one request.
type apiSender struct {
	cfg       Config
	p         int
	client    *http.Client
	body      []byte
	requests  int64
	delivered int64
	rtt       *hdrhistogram.Histogram // request round trips, µs
}

// apiReply is the API's answer to one message or a batch.
type apiReply struct {
	Delivered int64
	Results   []struct {
		Delivered int64
		Error     string
	}
	Error string
}

func newAPISender(cfg Config, p int) (*apiSender, error) {
	d := newDialer(cfg)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := d.netDialer(1000 + p)
			return nd.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     d.tls,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &apiSender{cfg: cfg, p: p, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		rtt: hdrhistogram.New(1, maxLatency, 3)}, nil
}

// send marks no item failed unless the API said so for that item.
func (s *apiSender) send(items []item) error {
	now := time.Now()
	us := now.UnixMicro()
	s.body = s.body[:0]
	if len(items) > 1 || s.cfg.Batch > 1 {
		s.body = append(s.body, '[')
	}
	for i, it := range items {
		if i > 0 {
			s.body = append(s.body, ',')
		}
		s.body = appendPublish(s.body, s.cfg.channelName(it.stream), us, it.seq, s.cfg.Size)
	}
	if len(items) > 1 || s.cfg.Batch > 1 {
		s.body = append(s.body, ']')
	}
	req, err := http.NewRequest(http.MethodPost, s.cfg.PublishURL, bytes.NewReader(s.body))
	if err != nil {
		return fatalError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.APIKey)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("bench: publisher %d: %w", s.p, err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	resp.Body.Close()
	_ = s.rtt.RecordValue(min(max(int64(time.Since(now)/time.Microsecond), 1), maxLatency))
	if err != nil {
		return fmt.Errorf("bench: publisher %d: %w", s.p, err)
	}
	var r apiReply
	_ = json.Unmarshal(b, &r)
	switch {
	case resp.StatusCode == http.StatusOK:
	case len(r.Results) == len(items): // a batch refused in part (503 with results)
		for i, x := range r.Results {
			items[i].failed = x.Error != ""
		}
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		return fatalError{fmt.Errorf("bench: %s answered %s: %s", s.cfg.PublishURL, resp.Status, bytes.TrimSpace(b))}
	default:
		return fmt.Errorf("bench: %s answered %s", s.cfg.PublishURL, resp.Status)
	}
	s.requests++
	s.delivered += r.Delivered
	for _, x := range r.Results {
		s.delivered += x.Delivered
	}
	return nil
}

func (s *apiSender) close() { s.client.CloseIdleConnections() }

// isFatal reports whether err should end the run.
func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}
