package server

import (
	"testing"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// TestMain fails the package if its tests leave goroutines or file
// descriptors behind once every server has shut down.
func TestMain(m *testing.M) { testutil.Main(m) }
