// Package procstat reads a process's CPU time from /proc: the one place
// that knows the layout of /proc/<pid>/stat, for the load generator and
// the tests' broker servers alike.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// TicksPerSecond is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const TicksPerSecond = 100

// CPUTicks is the CPU time (user and system) process pid has used, in
// clock ticks (TicksPerSecond).
func CPUTicks(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the parenthesised command name, which may hold
	// spaces: the state first, utime and stime 12th and 13th.
	f := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: %d fields in /proc/%d/stat", len(f), pid)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return utime + stime, nil
}
