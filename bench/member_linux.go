//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
)

// local is a member in this process.
type local struct {
	g    *group
	ctx  context.Context
	done chan struct{}
}

func newLocal(ctx context.Context, cfg Config, first, n int) (member, error) {
	g, err := newGroup(cfg, first, n)
	if err != nil {
		return nil, err
	}
	l := &local{g: g, ctx: ctx, done: make(chan struct{})}
	go func() { g.connect(ctx); close(l.done) }()
	return l, nil
}

func (l *local) ready() (int, int, error) {
	<-l.done
	c, f := l.g.connected()
	return c, f, nil
}

func (l *local) progress() snapshot {
	c, f := l.g.connected()
	return l.g.st.snapshot(c, f, nil)
}

func (l *local) start() error {
	l.g.st.reset()
	l.g.measuring.Store(true)
	switch l.g.cfg.Scenario {
	case ScenarioEcho:
		l.g.startEcho(l.g.cfg.Rate * float64(l.g.n) / float64(l.g.cfg.Conns))
	case ScenarioChurn:
		l.g.startChurn(l.ctx, l.g.n, l.g.st)
	case ScenarioBroadcast:
		if n := l.g.cfg.churnShare(l.g.first, l.g.n); n > 0 {
			l.g.storm.reset()
			l.g.startChurn(l.ctx, n, l.g.storm)
		}
	}
	return nil
}

func (l *local) stop() (snapshot, error) {
	l.g.stopSenders()
	l.g.measuring.Store(false)
	c, f := l.g.connected()
	s := l.g.st.snapshot(c, f, l.g.subsPerChannel())
	if l.g.cfg.churnShare(l.g.first, l.g.n) > 0 {
		storm := l.g.storm.snapshot(0, 0, nil)
		s.Storm = &storm
	}
	return s, nil
}

func (l *local) close() { l.g.close() }

func (l *local) pid() int { return os.Getpid() }

// workerEnv carries a worker's assignment from Run to RunWorker.
const workerEnv = "FANOUT_BENCH_WORKER"

type assignment struct {
	Config   Config
	Headers  []string // Config.Headers, which its JSON leaves out
	First, N int
}

// remote is a member in a worker process, driven over its stdin/stdout
// with one line per step: "ready C F" from the worker, "start" from Run
// answered by "started", "live" (any time after ready) answered by the
// worker's snapshot so far as one JSON line, and "stop" answered by its
// final snapshot the same way.
type remote struct {
	ctx     context.Context // the run's: its cause says why a worker was killed
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	isReady atomic.Bool
	mu      sync.Mutex // one request and its answer at a time, after ready
}

func startWorker(ctx context.Context, cfg Config, first, n int) (member, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	a, _ := json.Marshal(assignment{Config: cfg, Headers: cfg.Headers, First: first, N: n})
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), workerEnv+"="+string(a))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker: %w", err)
	}
	return &remote{ctx: ctx, cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<20)}, nil
}

func (r *remote) ready() (int, int, error) {
	line, err := r.out.ReadString('\n')
	if err != nil {
		return 0, 0, r.lost(err)
	}
	var c, f int
	if _, err := fmt.Sscanf(line, "ready %d %d", &c, &f); err != nil {
		return 0, 0, fmt.Errorf("bench: worker said %q", strings.TrimSpace(line))
	}
	r.isReady.Store(true)
	return c, f, nil
}

// progress is the worker's snapshot so far (nothing during its ramp).
func (r *remote) progress() snapshot {
	if !r.isReady.Load() {
		return snapshot{}
	}
	s, _ := r.ask("live")
	return s
}

// ask sends a request whose answer is a snapshot.
func (r *remote) ask(req string) (snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s snapshot
	if _, err := io.WriteString(r.in, req+"\n"); err != nil {
		return s, err
	}
	line, err := r.out.ReadBytes('\n')
	if err != nil {
		return s, r.lost(err)
	}
	return s, json.Unmarshal(line, &s)
}

// start returns once the worker measures, so that nothing published
// before is missed.
func (r *remote) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.in, "start\n"); err != nil {
		return err
	}
	line, err := r.out.ReadString('\n')
	if err != nil || line != "started\n" {
		return fmt.Errorf("bench: worker %d did not start: %q %v", r.cmd.Process.Pid, line, err)
	}
	return nil
}

func (r *remote) stop() (snapshot, error) { return r.ask("stop") }

// lost is the error of a worker whose answer did not come (err): the run's
// context killed it (its -timeout, say), or it died on its own, having
// said why on stderr.
func (r *remote) lost(err error) error {
	if cause := context.Cause(r.ctx); cause != nil {
		err = fmt.Errorf("killed: %w", cause)
	}
	return fmt.Errorf("bench: worker %d: %w", r.cmd.Process.Pid, err)
}

func (r *remote) pid() int { return r.cmd.Process.Pid }

func (r *remote) close() {
	r.in.Close()
	_ = r.cmd.Wait()
}

// IsWorker reports whether this process was started by Run as a worker;
// main should then call RunWorker and exit.
func IsWorker() bool { return os.Getenv(workerEnv) != "" }

// RunWorker serves one assignment from Run over stdin and stdout.
func RunWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var a assignment
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &a); err != nil {
		return fmt.Errorf("bench: worker assignment: %w", err)
	}
	a.Config.Headers = a.Headers
	m, err := newLocal(ctx, a.Config, a.First, a.N)
	if err != nil {
		return err
	}
	defer m.close()
	c, f, _ := m.ready()
	fmt.Fprintf(stdout, "ready %d %d\n", c, f)
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "start":
			if err := m.start(); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "started")
		case "live":
			if err := writeLine(stdout, m.progress()); err != nil {
				return err
			}
		case "stop":
			s, err := m.stop()
			if err != nil {
				return err
			}
			return writeLine(stdout, s)
		}
	}
	return sc.Err()
}

func writeLine(w io.Writer, s snapshot) error {
	b, _ := json.Marshal(s)
	_, err := w.Write(append(b, '\n'))
	return err
}
