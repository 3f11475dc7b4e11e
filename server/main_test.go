package server

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the package if its tests leave goroutines or file
// descriptors behind once every server has shut down.
func TestMain(m *testing.M) {
	fds := countFDs()
	goroutines := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), countFDs()
			if g <= goroutines+2 && f <= fds {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "leak: %d goroutines (%d at start), %d fds (%d at start)\n", g, goroutines, f, fds)
				buf := make([]byte, 1<<20)
				os.Stderr.Write(buf[:runtime.Stack(buf, true)])
				code = 1
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Exit(code)
}

func countFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}
