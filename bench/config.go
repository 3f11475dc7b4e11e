package bench

import (
	"errors"
	"fmt"
	"time"
)

// Config describes one run.
type Config struct {
	URL       string        // target, e.g. ws://127.0.0.1:8080/ws
	Scenario  string        // "idle" or "broadcast"
	Conns     int           // subscribers to hold
	DialRate  int           // new connections per second during the ramp
	SourceIPs int           // spread local addresses over 127.0.0.2 .. 127.0.0.(1+SourceIPs)
	Duration  time.Duration // measurement time after the ramp
	Settle    time.Duration // wait after the ramp before measuring
	Rate      float64       // broadcast: messages per second from the publisher
	Size      int           // broadcast: payload bytes (at least 16)
	ServerPID int           // sample this process's RSS and CPU; 0 skips
	Drain     time.Duration // broadcast: time allowed for the last messages to arrive
}

// Validate checks the fields.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("bench: URL is empty"))
	}
	if c.Scenario != "idle" && c.Scenario != "broadcast" {
		errs = append(errs, fmt.Errorf("bench: Scenario %q is not idle or broadcast", c.Scenario))
	}
	if c.Conns < 1 {
		errs = append(errs, fmt.Errorf("bench: Conns (%d) must be at least 1", c.Conns))
	}
	if c.Scenario == "broadcast" && c.Size < headerBytes {
		errs = append(errs, fmt.Errorf("bench: Size (%d) must be at least %d to carry the timestamp and sequence", c.Size, headerBytes))
	}
	if c.Scenario == "broadcast" && c.Rate <= 0 {
		errs = append(errs, fmt.Errorf("bench: Rate (%v) must be positive", c.Rate))
	}
	return errors.Join(errs...)
}
