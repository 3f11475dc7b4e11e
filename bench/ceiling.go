package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// CeilingSearch raises a broadcast's per-publisher rate phase by phase
// until the server stops keeping up, then bisects between the last rate
// kept up and the first one missed. Each phase is a whole run: fresh
// connections, and a fresh server when one is started for it.
type CeilingSearch struct {
	Factor    float64       // rate multiplier from one phase to the next while keeping up (default 1.5)
	MaxP99    time.Duration // a phase whose p99 exceeds this did not keep up (default 1 s)
	Refine    int           // bisection phases after the first miss (default 2)
	MaxPhases int           // stop after this many phases in all (default 12)
}

// Ceiling is a search's outcome: every phase, and the highest rate kept up.
type Ceiling struct {
	Phases       []Phase `json:"phases"`
	Rate         float64 `json:"msg_per_s"`        // per publisher, the highest kept up (0: none)
	Offered      float64 `json:"offered_per_s"`    // deliveries per second that rate asks for
	DeliveriesPS float64 `json:"deliveries_per_s"` // delivered at that rate
	P99ms        float64 `json:"p99_ms"`           // at that rate
}

// Phase is one rate tried.
type Phase struct {
	Result
	KeptUp bool   `json:"kept_up"`
	Why    string `json:"why,omitempty"` // what was missed
}

func (s CeilingSearch) withDefaults() CeilingSearch {
	if s.Factor <= 1 {
		s.Factor = 1.5
	}
	if s.MaxP99 <= 0 {
		s.MaxP99 = time.Second
	}
	if s.Refine < 0 {
		s.Refine = 0
	} else if s.Refine == 0 {
		s.Refine = 2
	}
	if s.MaxPhases <= 0 {
		s.MaxPhases = 12
	}
	return s
}

// keptUp says whether r kept up: everything sent was delivered in order
// within the drain, nobody was disconnected, the publishers sent at the
// rate asked (a server pushing back on them did not keep up either) and
// p99 is at most maxP99.
func keptUp(r Result, maxP99 time.Duration) (bool, string) {
	switch {
	case r.Missing > 0 || r.Lost > 0:
		return false, fmt.Sprintf("%d missing, %d lost", r.Missing, r.Lost)
	case r.Reordered > 0:
		return false, fmt.Sprintf("%d reordered", r.Reordered)
	case r.Disconnected > 0:
		return false, fmt.Sprintf("%d disconnected", r.Disconnected)
	case r.PublishedPS < 0.97*r.TargetPS:
		return false, fmt.Sprintf("published %.0f/s of %.0f/s", r.PublishedPS, r.TargetPS)
	case r.P99ms > float64(maxP99)/float64(time.Millisecond):
		return false, fmt.Sprintf("p99 %.0f ms", r.P99ms)
	}
	return true, ""
}

// SearchCeiling runs cfg (broadcast) from cfg.Rate upwards, with a fresh
// server from serverCmd for each phase when it is set.
func SearchCeiling(ctx context.Context, cfg Config, s CeilingSearch, serverCmd string, progress io.Writer) (Ceiling, error) {
	var c Ceiling
	if cfg.Scenario != ScenarioBroadcast || cfg.Channels > 0 {
		return c, errors.New("bench: the ceiling search drives the broadcast room")
	}
	if progress == nil {
		progress = io.Discard
	}
	s = s.withDefaults()
	lo, hi, rate := 0.0, 0.0, cfg.Rate
	for refined := 0; len(c.Phases) < s.MaxPhases && refined <= s.Refine && ctx.Err() == nil; {
		phase := cfg
		phase.Rate = rate
		fmt.Fprintf(progress, "ceiling phase %d: %.4g msg/s per publisher\n", len(c.Phases)+1, rate)
		var r Result
		var err error
		if serverCmd != "" {
			r, err = RunServer(ctx, phase, serverCmd, progress)
		} else {
			r, err = Run(ctx, phase, progress)
		}
		if err != nil {
			return c, err
		}
		ok, why := keptUp(r, s.MaxP99)
		c.Phases = append(c.Phases, Phase{Result: r, KeptUp: ok, Why: why})
		fmt.Fprintf(progress, "ceiling phase %d: %.0f deliveries/s, p99 %.1f ms: %s\n", len(c.Phases), r.DeliveriesPS, r.P99ms, keptWord(ok, why))
		if ok {
			lo = rate
			c.Rate, c.Offered, c.DeliveriesPS, c.P99ms = rate, rate*float64(r.Connected*r.Config.Publishers), r.DeliveriesPS, r.P99ms
		} else {
			hi = rate
		}
		switch {
		case hi == 0:
			rate *= s.Factor
		default:
			rate = (lo + hi) / 2
			refined++
		}
	}
	return c, nil
}

func keptWord(ok bool, why string) string {
	if ok {
		return "kept up"
	}
	return "did not keep up (" + why + ")"
}
