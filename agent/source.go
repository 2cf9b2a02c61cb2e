package agent

import (
	"context"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// A Source brings candidate files for a bundle from outside the node: a pull
// over SFTP (issue 5) or a CSR exchange (issue 6).
type Source interface {
	Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error)
}

// sourceName is how an install from a source is recorded in the log and
// the generation: the source's own description when it has one
// ("pull: sftp://node-8eab@admin:22/nodes/8eab…").
func sourceName(src Source, b *Bundle) string {
	if d, ok := src.(interface{ Describe(*Bundle) string }); ok {
		return "pull: " + d.Describe(b)
	}
	return "source"
}

// Retry timing of a failing Source.
const (
	// BackoffBase is the wait after the first failure.
	BackoffBase = 10 * time.Second
	// BackoffCap bounds the wait: a node whose admin host was down for a
	// day tries again within the hour after it is back.
	BackoffCap = time.Hour
)

// Backoff is how long to wait after the failures-th failure in a row:
// BackoffBase doubled for each earlier failure, capped at BackoffCap, then
// "equal jitter" (between half and all of it) so that nodes that failed
// together do not retry together. jitter is in [0,1).
func Backoff(failures int, jitter float64) time.Duration {
	if failures < 1 {
		return 0
	}
	d := BackoffCap
	if failures <= 20 {
		if x := BackoffBase << (failures - 1); x < BackoffCap {
			d = x
		}
	}
	jitter = clamp01(jitter)
	return d/2 + time.Duration(float64(d/2)*jitter)
}

func clamp01(j float64) float64 {
	switch {
	case j < 0:
		return 0
	case j >= 1:
		return 0.999999
	}
	return j
}

// FetchState is what the agent remembers of a bundle's Source.
type FetchState struct {
	// Started is when the agent began looking after the bundle.
	Started time.Time `json:"-"`
	// LastAttempt and LastSuccess are when Fetch was last called and last
	// returned without error.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Failures counts failed attempts since the last success.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// LastResult says what the last successful fetch did ("installed
	// ..gen-000004", "unchanged", "refused: …").
	LastResult string `json:"last_result,omitempty"`
	// Jitter is drawn anew after each attempt, in [0,1).
	Jitter float64 `json:"-"`
	// NextTry is when the agent calls Fetch next.
	NextTry time.Time `json:"next_try,omitzero"`
}

// NextFetch decides when to call a bundle's Source next:
//   - after a failure, Backoff later;
//   - when the bundle enters its renewal window (renewAt) and has not
//     been fetched since, at once; renewAt is zero when unknown, and the
//     agent passes Started when nothing is installed yet;
//   - otherwise every interval, ±10% by jitter; the first time within a
//     minute of starting (by jitter), so a fleet restarted together does
//     not call the admin host at the same instant.
func NextFetch(f FetchState, renewAt time.Time, interval time.Duration) time.Time {
	j := clamp01(f.Jitter)
	if f.Failures > 0 {
		return f.LastAttempt.Add(Backoff(f.Failures, j))
	}
	var t time.Time
	if f.LastAttempt.IsZero() {
		first := interval
		if first > time.Minute {
			first = time.Minute
		}
		t = f.Started.Add(time.Duration(float64(first) * j))
	} else {
		t = f.LastAttempt.Add(time.Duration(float64(interval) * (0.9 + 0.2*j)))
	}
	if !renewAt.IsZero() && f.LastAttempt.Before(renewAt) && renewAt.Before(t) {
		t = renewAt
	}
	return t
}
