package agent_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/rotate"
)

// PlanRenewal with an injected clock and jitter: short and long lifetimes,
// expired, not yet valid, the overrides, and a policy that cannot fit.
func TestPlanRenewal(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cert := func(life time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(life)}
	}
	cases := []struct {
		name    string
		life    time.Duration
		policy  rotate.RenewalPolicy
		jitter  float64
		now     time.Duration // after NotBefore
		renewAt time.Duration // after NotBefore
		due     bool
		err     string
	}{
		{name: "90 days, fresh", life: 90 * day, now: time.Hour, renewAt: 60 * day},
		{name: "90 days, full jitter: up to 5% earlier", life: 90 * day, jitter: 0.999999, now: time.Hour, renewAt: 60*day - time.Duration(float64(90*day)*0.05*0.999999)},
		{name: "90 days, in the window", life: 90 * day, now: 61 * day, renewAt: 60 * day, due: true},
		{name: "30 seconds", life: 30 * time.Second, now: 10 * time.Second, renewAt: 20 * time.Second},
		{name: "30 seconds, due", life: 30 * time.Second, now: 21 * time.Second, renewAt: 20 * time.Second, due: true},
		{name: "10 years", life: 3650 * day, now: day, renewAt: time.Duration(float64(3650*day) * 2 / 3)},
		{name: "expired", life: 90 * day, now: 91 * day, renewAt: 60 * day, due: true},
		{name: "not yet valid (clock behind)", life: 90 * day, now: -time.Hour, renewAt: 60 * day, due: true},
		{name: "renew_before 720h", life: 90 * day, policy: rotate.RenewalPolicy{Before: 720 * time.Hour}, now: day, renewAt: 60 * day},
		{name: "renew_at 0.5", life: 90 * day, policy: rotate.RenewalPolicy{At: 0.5}, now: 46 * day, renewAt: 45 * day, due: true},
		{name: "renew_before at the lifetime: a config error, not a loop", life: 30 * day, policy: rotate.RenewalPolicy{Before: 30 * day}, now: day, err: "config error: renew_before 720h0m0s is at or beyond"},
		{name: "renew_before beyond the lifetime, expired: due", life: 30 * day, policy: rotate.RenewalPolicy{Before: 60 * day}, now: 31 * day, due: true, err: "renew in a loop"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := agent.PlanRenewal(t0.Add(c.now), cert(c.life), c.policy, c.jitter)
			if c.err != "" {
				if p.Err == nil || !strings.Contains(p.Err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", p.Err, c.err)
				}
				if !p.RenewAt.IsZero() || p.Due != c.due {
					t.Fatalf("a bad policy planned %v due=%v", p.RenewAt, p.Due)
				}
				return
			}
			if p.Err != nil {
				t.Fatal(p.Err)
			}
			if got := p.RenewAt.Sub(t0); got != c.renewAt || p.Due != c.due {
				t.Fatalf("renew at +%s due=%v, want +%s due=%v", got, p.Due, c.renewAt, c.due)
			}
		})
	}
}

func TestNextWake(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		deadlines []time.Time
		want      time.Time
	}{
		{"nothing: at most MaxSleep", nil, now.Add(agent.MaxSleep)},
		{"zero deadlines are none", []time.Time{{}, {}}, now.Add(agent.MaxSleep)},
		{"the earliest", []time.Time{now.Add(time.Minute), now.Add(time.Second)}, now.Add(time.Second)},
		{"a renewal in a month still wakes within MaxSleep", []time.Time{now.Add(30 * 24 * time.Hour)}, now.Add(agent.MaxSleep)},
		{"a passed deadline: now", []time.Time{now.Add(-time.Hour)}, now},
	}
	for _, c := range cases {
		if got := agent.NextWake(now, c.deadlines...); !got.Equal(c.want) {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	cases := []struct {
		failures int
		jitter   float64
		want     time.Duration
	}{
		{0, 0.5, 0},
		{1, 0, 5 * time.Second},
		{1, 0.999999, 10*time.Second - 10*time.Microsecond/2},
		{2, 0, 10 * time.Second},
		{3, 0.5, 30 * time.Second},
		{9, 0, 21*time.Minute + 20*time.Second},
		{10, 0, 30 * time.Minute},                         // 85m20s capped at 1h, halved
		{10, 0.999999, time.Hour - 1800*time.Microsecond}, // never above the cap
		{1000, 0.5, 45 * time.Minute},
		{3, -1, 20 * time.Second}, // jitter clamped
	}
	for _, c := range cases {
		got := agent.Backoff(c.failures, c.jitter)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("Backoff(%d, %v) = %s, want %s", c.failures, c.jitter, got, c.want)
		}
		if got > agent.BackoffCap {
			t.Errorf("Backoff(%d, %v) = %s, above the cap", c.failures, c.jitter, got)
		}
	}
}

func TestNextFetch(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := time.Hour
	cases := []struct {
		name    string
		f       agent.FetchState
		renewAt time.Time
		want    time.Time
	}{
		{"first fetch within a minute of start, by jitter", agent.FetchState{Started: start, Jitter: 0.5}, start.Add(30 * 24 * hour), start.Add(30 * time.Second)},
		{"nothing installed: at once", agent.FetchState{Started: start, Jitter: 0.5}, start, start},
		{"periodic: interval ±10%", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0}, time.Time{}, start.Add(hour + 54*time.Minute)},
		{"periodic, full jitter", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.999999}, time.Time{}, start.Add(hour + 66*time.Minute)},
		{"entering the renewal window fetches then", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.5}, start.Add(hour + 10*time.Minute), start.Add(hour + 10*time.Minute)},
		{"in the window and fetched since: periodic", agent.FetchState{Started: start, LastAttempt: start.Add(2 * hour), Jitter: 0.5}, start.Add(hour), start.Add(3 * hour)},
		{"failing: backoff", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Failures: 3, Jitter: 0}, start.Add(hour), start.Add(hour + 20*time.Second)},
		{"failing a long time: capped", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Failures: 40, Jitter: 0.999999}, time.Time{}, start.Add(2*hour - 1800*time.Microsecond)},
	}
	for _, c := range cases {
		got := agent.NextFetch(c.f, c.renewAt, hour)
		if d := got.Sub(c.want); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
