//go:build race

package frame

// raceEnabled: sync.Pool drops items at random under the race detector, so
// allocation counts of pooled paths are not pinned.
const raceEnabled = true
