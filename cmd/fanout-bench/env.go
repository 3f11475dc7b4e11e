package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fanout-ws/fanout/internal/redact"
)

// environment is the machine and process a run happened on, as
// BENCHMARKS.md's Environment blocks need it.
type environment struct {
	Date           string            `json:"date"` // UTC, RFC 3339
	Hostname       string            `json:"hostname"`
	CPUModel       string            `json:"cpu_model"`
	Cores          int               `json:"cores"`
	MemoryBytes    int64             `json:"memory_bytes"`
	Kernel         string            `json:"kernel"`
	GoVersion      string            `json:"go_version"`
	NodeVersion    string            `json:"node_version,omitempty"`
	GOMAXPROCS     int               `json:"gomaxprocs"`
	OpenFilesLimit uint64            `json:"open_files_limit"`
	PinServer      []int             `json:"pin_server,omitempty"`
	PinClient      []int             `json:"pin_client,omitempty"`
	Vars           map[string]string `json:"vars,omitempty"` // FANOUT_* and Go runtime variables, secrets redacted
}

func newEnvironment(o *options) environment {
	e := environment{
		Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), PinServer: o.cfg.PinServer, PinClient: o.pinClient, Vars: map[string]string{},
	}
	e.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil { // Linux; elsewhere the generator does not run
		if _, v, ok := strings.Cut(string(b), "MemTotal:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				e.MemoryBytes = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		e.NodeVersion = strings.TrimSpace(string(out))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		e.OpenFilesLimit = rl.Cur
	}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "FANOUT_") || k == "GOGC" || k == "GOMEMLIMIT" || k == "GOMAXPROCS" || k == "GODEBUG" {
			e.Vars[k] = redactValue(k, v)
		}
	}
	return e
}

// secretWords mark a flag or variable whose value is a secret.
var secretWords = []string{"KEY", "SECRET", "TOKEN", "PASSWORD"}

func isSecret(name string) bool {
	up := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

const redacted = "[redacted]"

func redactValue(name, v string) string {
	if isSecret(name) && v != "" {
		return redacted
	}
	return redact.URL(v)
}

// redactArgs is args with the values of secret flags (-api-key), of
// -header lines (a cookie, say) and URL passwords replaced.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case strings.HasPrefix(a, "-") && hasValue && name == "header":
			out[i] = a[:strings.IndexByte(a, '=')+1] + redactHeader(value)
		case i > 0 && strings.TrimLeft(args[i-1], "-") == "header":
			out[i] = redactHeader(a)
		case strings.HasPrefix(a, "-") && hasValue && isSecret(name):
			out[i] = a[:strings.IndexByte(a, '=')+1] + redacted
		case i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") && isSecret(strings.TrimLeft(args[i-1], "-")):
			out[i] = redacted
		case strings.Contains(a, " "): // a command line of its own (-server-cmd)
			out[i] = redactCommand(a)
		default:
			out[i] = redact.URL(a)
		}
	}
	return out
}

// redactHeader keeps a header line's name only.
func redactHeader(h string) string {
	name, _, _ := strings.Cut(h, ":")
	return name + ": " + redacted
}

// redactCommand is redactArgs for a command line in one string.
func redactCommand(cmd string) string { return strings.Join(redactArgs(strings.Fields(cmd)), " ") }

func writeJSON(path string, doc document) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
