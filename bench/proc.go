package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/fanout-ws/fanout/internal/procstat"
)

// procSample is a process's resident memory and CPU time.
type procSample struct {
	RSSBytes  int64
	PeakBytes int64 // VmHWM: the largest RSS so far
	CPUTicks  int64 // utime+stime in clock ticks (USER_HZ, 100 on Linux)
}

func sampleProc(pid int) (procSample, error) {
	var s procSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.RSSBytes = kb << 10
		}
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.PeakBytes = kb << 10
		}
	}
	s.CPUTicks, err = procstat.CPUTicks(pid)
	if err != nil {
		return s, err
	}
	return s, nil
}

// machineTicks is the CPU time all cores spent busy (not idle, not waiting
// for I/O) since boot, in clock ticks, from /proc/stat.
func machineTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return busy
}

// machineMemory is the memory in use on the whole machine (MemTotal -
// MemAvailable: processes, kernel, everything) and the kernel's slab
// (socket objects among it), from /proc/meminfo.
func machineMemory() (used, slab int64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	var total, avail int64
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			avail = kb << 10
		case "Slab:":
			slab = kb << 10
		}
	}
	return total - avail, slab
}

// generatorRSS is the resident memory of the generator's processes: this
// one and its workers.
func generatorRSS(members []member) int64 {
	seen := map[int]bool{}
	var rss int64
	for _, m := range append([]member{nil}, members...) {
		pid := os.Getpid()
		if m != nil {
			pid = m.pid()
		}
		if !seen[pid] {
			seen[pid] = true
			s, _ := sampleProc(pid)
			rss += s.RSSBytes
		}
	}
	return rss
}
