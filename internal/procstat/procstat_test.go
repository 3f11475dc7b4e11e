package procstat

import (
	"os"
	"testing"
	"time"
)

// This process's ticks grow while it spins; a process that is not there is
// an error.
func TestCPUTicks(t *testing.T) {
	before, err := CPUTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPUTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU ticks %d then %d after 100 ms of spinning", before, after)
	}
	if _, err := CPUTicks(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
}
