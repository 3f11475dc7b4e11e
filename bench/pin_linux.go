//go:build linux

package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuSet is cpus as the kernel's affinity mask.
func cpuSet(cpus []int) (unix.CPUSet, error) {
	var set unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= runtime.NumCPU() {
			return set, fmt.Errorf("bench: CPU %d does not exist (this machine has %d)", c, runtime.NumCPU())
		}
		set.Set(c)
	}
	return set, nil
}

// PinProcess restricts every thread of process pid to cpus, as
// `taskset -a -p -c` does. Threads created while it runs are caught by
// listing the threads again until no new one shows up; threads created
// later inherit the mask of the pinned thread that creates them.
func PinProcess(pid int, cpus []int) error {
	set, err := cpuSet(cpus)
	if err != nil {
		return err
	}
	done := map[int]bool{}
	for {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("bench: pin %d: %w", pid, err)
		}
		fresh := 0
		for _, e := range entries {
			tid, _ := strconv.Atoi(e.Name())
			if done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("bench: pin thread %d of %d: %w", tid, pid, err)
			}
			done[tid], fresh = true, fresh+1
		}
		if fresh == 0 {
			return nil
		}
	}
}

// PinSelf pins the load generator to cpus and sizes GOMAXPROCS to them;
// the worker processes it starts inherit the mask.
func PinSelf(cpus []int) error {
	if err := PinProcess(os.Getpid(), cpus); err != nil {
		return err
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// startPinned starts cmd already restricted to cpus (none: unpinned), so
// that a runtime sizing itself from its affinity at start (Go's
// GOMAXPROCS, libuv's pool) sees only those. The child inherits the mask
// of the thread that forks it: a locked thread whose mask is set and which
// exits with its goroutine, never returning to the scheduler.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	set, err := cpuSet(cpus)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread goes away with the goroutine
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("bench: pin server: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}
