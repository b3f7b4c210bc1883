package guest

import "time"

// Restart policies of a service (abi.Service.Restart).
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// ShouldRestart says whether a service that ended with code is started again under policy.
// forced is a restart init asked for itself (the service stayed unhealthy): it counts as a
// failure whatever the code.
func ShouldRestart(policy string, code int, forced bool) bool {
	switch policy {
	case RestartAlways:
		return true
	case RestartOnFailure:
		return code != 0 || forced
	}
	return false
}

// Backoff spaces the restarts of one service: the delay starts at Min and doubles after each
// run shorter than Stable, up to Max; a run of Stable or more resets it. More than Limit
// restarts within Window make it give up, so a service that cannot start does not loop forever.
type Backoff struct {
	Min, Max, Stable time.Duration
	Limit            int
	Window           time.Duration

	delay    time.Duration
	restarts []time.Time
}

// DefaultBackoff is the backoff of every service: 1s doubling to 30s; 10 restarts in 5 minutes
// at most.
func DefaultBackoff() *Backoff {
	return &Backoff{Min: time.Second, Max: 30 * time.Second, Stable: 30 * time.Second, Limit: 10, Window: 5 * time.Minute}
}

// Next returns the delay before the next start of a service that ran for ranFor and ended at
// now, or ok false when the restart limit is reached.
func (b *Backoff) Next(now time.Time, ranFor time.Duration) (delay time.Duration, ok bool) {
	kept := b.restarts[:0]
	for _, t := range b.restarts {
		if now.Sub(t) < b.Window {
			kept = append(kept, t)
		}
	}
	b.restarts = kept
	if len(b.restarts) >= b.Limit {
		return 0, false
	}
	switch {
	case ranFor >= b.Stable || b.delay == 0:
		b.delay = b.Min
	default:
		b.delay = min(2*b.delay, b.Max)
	}
	b.restarts = append(b.restarts, now)
	return b.delay, true
}
