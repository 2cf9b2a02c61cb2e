package rotate

import (
	"fmt"
	"time"
)

// RenewalPolicy says when in a certificate's life renewal starts. At most one
// of Before and At is set; neither means DefaultRenewAt.
type RenewalPolicy struct {
	// Before renews this long before the certificate expires.
	Before time.Duration
	// At renews at this fraction of the lifetime (0.66 = two thirds in).
	At float64
}

// DefaultRenewAt is two thirds of the lifetime, as certmagic and the
// kubelet do: a third of the lifetime remains for retries when the admin
// host is down.
const DefaultRenewAt = 2.0 / 3.0

// MaxJitter is the largest share of the lifetime by which renewal is moved
// earlier, so that certificates issued in the same minute do not all renew
// in the same minute.
const MaxJitter = 0.05

// Check refuses a policy that could never be satisfied: a renewal point at
// or beyond the lifetime would renew in a loop. lifetime may be zero when
// the certificate is not known yet.
func (p RenewalPolicy) Check(lifetime time.Duration) error {
	switch {
	case p.Before != 0 && p.At != 0:
		return fmt.Errorf("renew_before and renew_at both set; choose one")
	case p.Before < 0:
		return fmt.Errorf("renew_before %s is negative", p.Before)
	case p.At < 0 || p.At >= 1:
		return fmt.Errorf("renew_at %.3g is not a fraction of the lifetime between 0 and 1 (0.66 renews two thirds in)", p.At)
	case p.Before != 0 && lifetime > 0 && p.Before >= lifetime:
		return fmt.Errorf("renew_before %s is at or beyond the certificate's lifetime of %s: it would renew in a loop; use a shorter duration or renew_at", p.Before, lifetime)
	}
	return nil
}

// RenewalTime returns when a certificate valid from notBefore to notAfter
// should be renewed. jitter in [0,1) moves the time earlier by up to
// MaxJitter of the lifetime; tests pass fixed values, the agent a random
// one drawn once per certificate.
func RenewalTime(notBefore, notAfter time.Time, p RenewalPolicy, jitter float64) (time.Time, error) {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore, fmt.Errorf("certificate lifetime is %s (not after %s, not before %s)", life, Stamp(notAfter), Stamp(notBefore))
	}
	if err := p.Check(life); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch {
	case p.Before != 0:
		t = notAfter.Add(-p.Before)
	case p.At != 0:
		t = notBefore.Add(time.Duration(float64(life) * p.At))
	default:
		t = notBefore.Add(time.Duration(float64(life) * DefaultRenewAt))
	}
	if jitter < 0 {
		jitter = 0
	}
	if jitter >= 1 {
		jitter = 0.999999
	}
	t = t.Add(-time.Duration(float64(life) * MaxJitter * jitter))
	if t.Before(notBefore) {
		t = notBefore
	}
	return t, nil
}

// CriticalThreshold is how close to expiry a certificate that has not been
// renewed becomes an emergency: 10% of its lifetime or 24 hours, whichever
// is less.
func CriticalThreshold(notBefore, notAfter time.Time) time.Duration {
	t := notAfter.Sub(notBefore) / 10
	if t > 24*time.Hour {
		t = 24 * time.Hour
	}
	return t
}

// Health is a bundle's state for `check` and monitoring, ordered by
// severity; the numbers are the Nagios exit codes.
type Health int

const (
	OK       Health = 0
	Warning  Health = 1
	Critical Health = 2
	Unknown  Health = 3
)

// MarshalText makes a Health its word in JSON ("OK", "WARNING",
// "CRITICAL", "UNKNOWN"), as check prints it (docs/json.md).
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads the word, or the Nagios number older output had.
func (h *Health) UnmarshalText(b []byte) error {
	for _, x := range []Health{OK, Warning, Critical, Unknown} {
		if string(b) == x.String() || string(b) == fmt.Sprint(int(x)) {
			*h = x
			return nil
		}
	}
	return fmt.Errorf("health %q: want OK, WARNING, CRITICAL or UNKNOWN", b)
}

func (h Health) String() string {
	switch h {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// ExpiryHealth judges a certificate's validity at now: WARNING inside its
// renewal window, CRITICAL within the critical threshold or outside its
// validity.
func ExpiryHealth(now, notBefore, notAfter, renewAt time.Time) (Health, string) {
	left := notAfter.Sub(now)
	switch {
	case now.After(notAfter):
		return Critical, fmt.Sprintf("expired %s ago (%s)", Age(-left), Stamp(notAfter))
	case now.Before(notBefore):
		return Critical, fmt.Sprintf("not valid until %s; check the clock", Stamp(notBefore))
	case left <= CriticalThreshold(notBefore, notAfter):
		return Critical, fmt.Sprintf("expires in %s (%s) and has not been renewed", Age(left), Stamp(notAfter))
	case !now.Before(renewAt):
		return Warning, fmt.Sprintf("in its renewal window: expires in %s (%s)", Age(left), Stamp(notAfter))
	}
	return OK, fmt.Sprintf("expires in %s (%s), renewal in %s", Age(left), Stamp(notAfter), Age(renewAt.Sub(now)))
}
