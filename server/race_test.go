//go:build race

package server

// raceEnabled: the race detector multiplies allocations and slows GC, so
// live-heap budgets are only checked without it.
const raceEnabled = true
