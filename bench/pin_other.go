//go:build !linux

package bench

import "os/exec"

// PinProcess is unsupported off Linux.
func PinProcess(int, []int) error { return errUnsupported }

// PinSelf is unsupported off Linux.
func PinSelf([]int) error { return errUnsupported }

func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	return errUnsupported
}
