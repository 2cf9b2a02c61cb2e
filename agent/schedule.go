package agent

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// MaxSleep bounds how long a bundle's loop sleeps. Timers run on the
// monotonic clock, which stops while a machine is suspended; waking every
// few minutes and comparing wall-clock times means a suspend or a clock
// jump never makes the agent miss a renewal window by more than this.
const MaxSleep = 2 * time.Minute

// RenewalPlan is when a live certificate should be renewed.
type RenewalPlan struct {
	NotBefore, NotAfter time.Time
	RenewAt             time.Time
	// Due is true from RenewAt on, and for a certificate not yet valid or
	// already expired.
	Due bool
	// CriticalAt is where the safety net starts: rotate.CriticalThreshold
	// (10% of the lifetime or 24 hours, whichever is less) before expiry.
	// Critical is true from then on, expired included: the certificate
	// was not renewed in time, and that is an emergency.
	CriticalAt time.Time
	Critical   bool
	// Err is a policy that cannot work for this certificate (renew_before
	// at or beyond its lifetime): a config error, reported as such and
	// never acted on in a loop.
	Err error
}

// PlanRenewal decides a certificate's renewal under a bundle's policy at
// now. jitter in [0,1) moves the time earlier by up to rotate.MaxJitter of
// the lifetime (rotate.JitterFor derives it from the certificate).
func PlanRenewal(now time.Time, leaf *x509.Certificate, p rotate.RenewalPolicy, jitter float64) RenewalPlan {
	r := RenewalPlan{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	r.CriticalAt = leaf.NotAfter.Add(-rotate.CriticalThreshold(leaf.NotBefore, leaf.NotAfter))
	r.Critical = !now.Before(r.CriticalAt)
	at, err := rotate.RenewalTime(leaf.NotBefore, leaf.NotAfter, p, jitter)
	if err != nil {
		r.Err = fmt.Errorf("config error: %w", err)
		// Expiry still matters: treat the certificate as due at its end.
		r.Due = !now.Before(leaf.NotAfter)
		return r
	}
	r.RenewAt = at
	r.Due = !now.Before(at) || now.Before(leaf.NotBefore)
	return r
}

// NextWake is the earliest of the given deadlines that is not zero, and
// never later than now+MaxSleep nor earlier than now.
func NextWake(now time.Time, deadlines ...time.Time) time.Time {
	w := now.Add(MaxSleep)
	for _, d := range deadlines {
		if !d.IsZero() && d.Before(w) {
			w = d
		}
	}
	if w.Before(now) {
		w = now
	}
	return w
}

// HeldRetry is how long the loop waits before its n-th retry (from 1) of
// a swap stopped by a live file another process holds open
// (rotate.HeldError): 1 s, doubling, at most 30 s, so a daemon that holds
// its key only briefly costs a second or two, and one that holds it for
// its lifetime is looked at twice a minute, not on every file event.
func HeldRetry(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := time.Second
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}
