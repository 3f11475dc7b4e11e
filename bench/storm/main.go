// Command storm measures a reconnect storm (issue 21): N subscribers of one
// channel spread over several fanout nodes joined by a broker, a publisher
// stamping each message with its send time, and, mid-broadcast, one node
// drained (SIGTERM) or killed (SIGKILL). Its clients reconnect to the other
// nodes by README's client rules (full-jitter backoff, the server's
// retry-ms hint and Retry-After, resume with since= and epoch=). It
// reports how long until every dropped client was back, the handshakes/s
// and refusals the survivors saw, the survivors' delivery p99 before and
// during the storm, and the messages missing once it is over (want 0).
// bench/scripts/storm.sh starts the nodes and runs it; loopback only, and
// every run stops by itself (-timeout).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	nodes, admins        []string // each node's -addr and -admin-addr
	lb                   string   // dial this instead of the nodes (a load balancer), if set
	victim, pid          int      // which node to drain or kill, and its process
	event                string   // drain (SIGTERM), kill (SIGKILL) or none
	clients              int
	channel, apiKey      string
	rate                 float64 // publishes per second
	before, after        time.Duration
	baseDelay, maxDelay  time.Duration
	timeout, connectWait time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parse(os.Args[1:])
	if err == nil {
		err = storm(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func parse(args []string) (config, error) {
	var c config
	var nodes, admins string
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	fs.StringVar(&nodes, "nodes", "", "comma-separated host:port of each node's -addr")
	fs.StringVar(&admins, "admins", "", "comma-separated host:port of each node's -admin-addr, in the same order (metrics)")
	fs.StringVar(&c.lb, "lb", "", "dial this host:port (a load balancer) instead of the nodes")
	fs.IntVar(&c.victim, "victim", 0, "index in -nodes of the node to drain or kill")
	fs.IntVar(&c.pid, "pid", 0, "the victim's process id")
	fs.StringVar(&c.event, "event", "drain", "drain (SIGTERM), kill (SIGKILL) or none")
	fs.IntVar(&c.clients, "clients", 300, "subscribers")
	fs.StringVar(&c.channel, "channel", "storm", "channel")
	fs.StringVar(&c.apiKey, "api-key", os.Getenv("FANOUT_API_KEY"), "the nodes' -api-key (publishing goes through a survivor's HTTP API)")
	fs.Float64Var(&c.rate, "rate", 5, "messages published per second")
	fs.DurationVar(&c.before, "before", 5*time.Second, "measure this long before the event")
	fs.DurationVar(&c.after, "after", 3*time.Second, "and this long after every dropped client is back")
	fs.DurationVar(&c.baseDelay, "base", time.Second, "clients' backoff base")
	fs.DurationVar(&c.maxDelay, "cap", 30*time.Second, "clients' backoff cap")
	fs.DurationVar(&c.connectWait, "connect-timeout", 60*time.Second, "time for every client to subscribe at the start")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "give up on the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.nodes, c.admins = strings.Split(nodes, ","), strings.Split(admins, ",")
	switch {
	case nodes == "" || len(c.admins) != len(c.nodes):
		return c, errors.New("-nodes and -admins: one entry per node, in the same order")
	case len(c.nodes) < 2 || c.victim < 0 || c.victim >= len(c.nodes):
		return c, errors.New("-victim must name one of at least two -nodes")
	case c.event != "none" && c.pid <= 0:
		return c, errors.New("-pid: the victim's process id")
	case c.event != "drain" && c.event != "kill" && c.event != "none":
		return c, fmt.Errorf("-event %q: drain, kill or none", c.event)
	}
	return c, nil
}

// storm runs the scenario and writes its report.
func storm(ctx context.Context, cfg config, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	r := &run{cfg: cfg, lat: newLatencies()}
	clients := make([]*client, cfg.clients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		for _, c := range clients {
			c.shut()
		}
		wg.Wait()
	}()
	for i := range clients {
		clients[i] = &client{id: i, node: i % len(cfg.nodes)}
		wg.Add(1)
		go func() { defer wg.Done(); clients[i].loop(r, stop) }()
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond) // connect at about 10,000/s, not all at once
		}
	}
	start := time.Now()
	if err := waitFor(ctx, cfg.connectWait, func() bool { return countSubscribed(clients) == cfg.clients }); err != nil {
		return fmt.Errorf("%d of %d clients subscribed: %w", countSubscribed(clients), cfg.clients, err)
	}
	connected := time.Since(start)
	pub := &publisher{cfg: cfg, to: cfg.nodes[(cfg.victim+1)%len(cfg.nodes)]}
	pubDone := make(chan error, 1)
	pubStop := make(chan struct{})
	go func() { pubDone <- pub.run(pubStop) }()
	if !sleep(ctx, cfg.before) {
		return ctx.Err()
	}
	survivors := survivorAdmins(cfg)
	at := scrape(survivors)
	sampler := startSampler(survivors)
	event := time.Now()
	r.phase.Store(phaseStorm)
	if err := signalVictim(cfg); err != nil {
		return err
	}
	backErr := waitFor(ctx, cfg.timeout, func() bool { return allBack(clients, cfg) })
	back := time.Now()
	r.phase.Store(phaseAfter)
	peak := sampler.stop()
	end := scrape(survivors)
	if backErr == nil && !sleep(ctx, cfg.after) {
		backErr = ctx.Err()
	}
	close(pubStop)
	if err := <-pubDone; err != nil {
		return err
	}
	final := pub.last.Load()
	_ = waitFor(ctx, 10*time.Second, func() bool { return caughtUp(clients, final) })
	rep := report(r, clients, final, at, end, peak, connected, back.Sub(event), backErr)
	return rep.write(w)
}

// signalVictim drains or kills the victim node.
func signalVictim(cfg config) error {
	switch cfg.event {
	case "drain":
		return syscall.Kill(cfg.pid, syscall.SIGTERM)
	case "kill":
		return syscall.Kill(cfg.pid, syscall.SIGKILL)
	}
	return nil
}

func survivorAdmins(cfg config) []string {
	var s []string
	for i, a := range cfg.admins {
		if i != cfg.victim || cfg.event == "none" {
			s = append(s, a)
		}
	}
	return s
}

func countSubscribed(cs []*client) int {
	n := 0
	for _, c := range cs {
		if c.subs.Load() > 0 {
			n++
		}
	}
	return n
}

// allBack reports whether every client that lost its connection in the
// event is subscribed again (a drain closes the victim's clients over its
// -drain-duration: until its last one is closed, not all are back).
func allBack(cs []*client, cfg config) bool {
	for _, c := range cs {
		if c.dropped.Load() != 0 && c.back.Load() == 0 {
			return false
		}
		if cfg.event != "none" && cfg.lb == "" && c.node == cfg.victim && c.dropped.Load() == 0 {
			return false // still on the victim
		}
	}
	return true
}

func caughtUp(cs []*client, final uint64) bool {
	for _, c := range cs {
		if c.lastSeen.Load() < final {
			return false
		}
	}
	return true
}

// waitFor polls ok every 20 ms until it holds, for at most d.
func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// publisher posts stamped messages through a survivor's HTTP API.
type publisher struct {
	cfg  config
	to   string
	last atomic.Uint64
}

func (p *publisher) run(stop <-chan struct{}) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.cfg.rate))
	defer tick.Stop()
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		body := fmt.Sprintf(`{"channel":%q,"data":{"t":%d}}`, p.cfg.channel, time.Now().UnixNano())
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.to+"/api/publish", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", p.cfg.apiKey)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var reply struct{ Offset uint64 }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(bytes.NewReader(b)).Decode(&reply) != nil {
			return fmt.Errorf("publish: %s %s", resp.Status, b)
		}
		p.last.Store(reply.Offset)
	}
}
