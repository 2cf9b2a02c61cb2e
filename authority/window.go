package authority

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// Window is what `ca renew --within` re-issues: certificates that expire
// within Duration, or that have at most Fraction of their lifetime left.
// Exactly one of the two is set.
//
// A fraction follows the nodes' own schedule: an agent with the default
// policy opens its renewal window at 2/3 of the lifetime, moved earlier by
// up to 5% of it (rotate.MaxJitter), so the earliest agent looks for a
// renewed bundle with 38.3% of the lifetime left. `--within 40%` re-issues
// before that, whatever the lifetime; a fixed duration such as 30d is
// right for one lifetime only (see docs/renewal.md for the rule).
type Window struct {
	Duration time.Duration
	Fraction float64
}

// DefaultWindow is what the shipped timer passes: 40% of the lifetime.
var DefaultWindow = Window{Fraction: 0.40}

// ParseWindow reads --within: a duration ("30d", "720h") or a percentage
// of the lifetime ("40%", "37.5%").
func ParseWindow(s string) (Window, error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f <= 0 || f >= 100 {
			return Window{}, fmt.Errorf("%q: a percentage of the lifetime, more than 0%% and less than 100%%, such as 40%%", s)
		}
		return Window{Fraction: f / 100}, nil
	}
	d, err := rotate.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return Window{}, fmt.Errorf("%q: a duration such as 30d or 720h, or a percentage of the lifetime such as 40%%", s)
	}
	return Window{Duration: d}, nil
}

// Check refuses a window that re-issues nothing or everything.
func (w Window) Check() error {
	switch {
	case w.Duration != 0 && w.Fraction != 0:
		return fmt.Errorf("--within: a duration or a percentage, not both")
	case w.Duration < 0:
		return fmt.Errorf("--within must be positive, such as 30d or 40%%")
	case w.Fraction < 0 || w.Fraction >= 1:
		return fmt.Errorf("--within %g%%: a percentage of the lifetime, more than 0%% and less than 100%%", w.Fraction*100)
	case w.Duration == 0 && w.Fraction == 0:
		return fmt.Errorf("--within must be positive, such as 30d or 40%%")
	}
	return nil
}

// Due reports whether a certificate valid from notBefore to notAfter is
// within the window at now (an expired one always is).
func (w Window) Due(notBefore, notAfter, now time.Time) bool {
	return notAfter.Sub(now) <= w.Span(notBefore, notAfter)
}

// Span is the window's length for a certificate of that validity.
func (w Window) Span(notBefore, notAfter time.Time) time.Duration {
	if w.Fraction > 0 {
		return time.Duration(float64(notAfter.Sub(notBefore)) * w.Fraction)
	}
	return w.Duration
}

// String is the window as the command line writes it.
func (w Window) String() string {
	if w.Fraction > 0 {
		return strconv.FormatFloat(w.Fraction*100, 'f', -1, 64) + "% of its lifetime"
	}
	return rotate.Age(w.Duration)
}
