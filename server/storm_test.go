package server

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// stormResult is how one client of a storm got in.
type stormResult struct {
	refused    int    // 503s before its 101
	retryAfter string // the last 503's
	firstAfter int    // the first 503's Retry-After, in seconds
	err        error
	conn       *websocket.Conn
}

// stormClient dials until upgraded, honouring Retry-After with a random
// delay in [0, 1 s] on top (the client rules in README). It gives up after
// deadline.
func stormClient(url string, deadline time.Time, first chan<- int) stormResult {
	var r stormResult
	for {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if r.refused == 0 && first != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			first <- status
		}
		if err == nil {
			r.conn = c
			return r
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			r.err = fmt.Errorf("dial: %v (%v)", err, resp)
			return r
		}
		r.refused++
		r.retryAfter = resp.Header.Get("Retry-After")
		secs, perr := strconv.Atoi(r.retryAfter)
		if perr != nil || secs < 1 {
			r.err = fmt.Errorf("503 with Retry-After %q", r.retryAfter)
			return r
		}
		if r.refused == 1 {
			r.firstAfter = secs
		}
		wait := time.Duration(secs)*time.Second + rand.N(time.Second)
		if time.Now().Add(wait).After(deadline) {
			r.err = fmt.Errorf("still refused %d times at the deadline", r.refused)
			return r
		}
		time.Sleep(wait) // the client's backoff, not a wait for readiness
	}
}

// A storm of new connections past MaxHandshakeRate: the first wave gets no
// more upgrades than the token bucket holds (burst plus rate times the
// wave's duration), the rest 503 with a Retry-After that spreads them over
// the seconds ahead at the rate; clients that honour it are all in within
// the time the rate implies plus two retry rounds (and slack), and
// the connection that was open before the storm keeps being served.
func TestAdmission_HandshakeRateStorm(t *testing.T) {
	const (
		clients = 100
		perSec  = 50
		burst   = perSec / 10
	)
	s, addr := runServer(t, Config{MaxHandshakeRate: perSec})
	url := "ws://" + addr + "/echo"
	old := dialGorilla(t, url) // takes one of the bucket's first tokens

	start := time.Now()
	// The rate's time plus two retry rounds, and slack for a machine loaded
	// by the race detector and parallel packages: how the refused are spread
	// is asserted from their Retry-After below, not from the clock.
	deadline := start.Add(clients/perSec*time.Second + 2*(2*time.Second) + 10*time.Second)
	first := make(chan int, clients)
	results := make(chan stormResult, clients)
	for range clients {
		go func() { results <- stormClient(url, deadline, first) }()
	}
	upgraded, refused := 0, 0
	for range clients {
		switch st := <-first; st {
		case http.StatusSwitchingProtocols:
			upgraded++
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("first wave: status %d", st)
		}
	}
	wave := time.Since(start)
	if limit := burst + int(wave.Seconds()*perSec) + 1; upgraded > limit || refused == 0 {
		t.Fatalf("first wave over %v: %d upgraded, %d refused; want at most %d upgraded", wave, upgraded, refused, limit)
	}
	if err := old.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := old.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("the connection from before the storm: %q %v", p, err)
	}
	told := map[int]int{} // first-wave clients by the Retry-After they were told
	for range clients {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.refused > 0 {
			told[r.firstAfter]++
		}
		r.conn.Close()
	}
	// The refused are booked into the seconds ahead at the admission rate,
	// not all told to return after one. Retry-After counts from each
	// refusal, so over a wave that lasted a while one value may name places
	// in two seconds: the rate's worth more per second of the wave.
	for secs, n := range told {
		if limit := perSec + 1 + int(wave.Seconds()*perSec); n > limit {
			t.Fatalf("%d clients told Retry-After %d, more than the %d the rate admits over a %v wave: %v", n, secs, limit, wave, told)
		}
	}
	if len(told) < 2 {
		t.Fatalf("Retry-After of the first refusals: %v, want them spread over the seconds ahead", told)
	}
	t.Logf("first wave (%v): %d upgraded, %d refused; all %d in after %v", wave.Round(time.Millisecond), upgraded, refused, clients, time.Since(start).Round(time.Millisecond))
	if st := s.Stats(); st.RejectedRate < uint64(refused) {
		t.Fatalf("RejectedRate %d, want at least %d", st.RejectedRate, refused)
	}
}

// Over TLS the handshake rate is spent at accept, before any crypto: sockets
// that never send a ClientHello are refused once the bucket is empty, and a
// wss client within the rate still gets in.
func TestAdmission_HandshakeRateBeforeTLS(t *testing.T) {
	tc, pool := tlsSetup(t, true)
	s, addr := runServer(t, Config{MaxHandshakeRate: 0.5, TLS: tc}) // burst 1, then one every 2 s
	for range 3 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close() // silent: no TLS handshake starts
	}
	eventually(t, 5*time.Second, func() error {
		if got := s.Stats().RejectedRate; got != 2 {
			return fmt.Errorf("RejectedRate %d, want 2: the first silent socket took the only token", got)
		}
		return nil
	})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	eventually(t, 5*time.Second, func() error { // the next token, within 2 s
		c, _, err := d.Dial("wss://"+addr+"/echo", nil)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
