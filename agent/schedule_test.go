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
	day := 24 * time.Hour
	real := func(failures int, jitter float64) time.Duration {
		return agent.Backoff(failures, jitter, 30*day, 90*day)
	}
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
		got := real(c.failures, c.jitter)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("Backoff(%d, %v) = %s, want %s", c.failures, c.jitter, got, c.want)
		}
		if got > agent.BackoffCap {
			t.Errorf("Backoff(%d, %v) = %s, above the cap", c.failures, c.jitter, got)
		}
	}
}

// Retry timing scales with the time a certificate has left: a 90-day
// certificate keeps the hour-long cap to its last day; a 30-second one
// retries about every second; an expiring or expired one keeps the pace of
// a tenth of its lifetime rather than collapsing to nothing.
func TestRetryBounds(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		name       string
		base, cap  time.Duration
		left, life time.Duration
		wantBase   time.Duration
		wantCap    time.Duration
	}{
		{"nothing installed: unscaled", agent.BackoffBase, agent.BackoffCap, 0, 0, 10 * time.Second, time.Hour},
		{"90 days, 30 left", agent.BackoffBase, agent.BackoffCap, 30 * day, 90 * day, 10 * time.Second, time.Hour},
		{"90 days, 1 hour left: a tenth of the lifetime holds the cap", agent.BackoffBase, agent.BackoffCap, time.Hour, 90 * day, 10 * time.Second, time.Hour},
		{"90 days, expired", agent.NothingNewerBase, agent.BackoffCap, -day, 90 * day, 5 * time.Minute, time.Hour},
		{"1 day, 8 hours left: cap 48 min", agent.BackoffBase, agent.BackoffCap, 8 * time.Hour, day, 10 * time.Second, 48 * time.Minute},
		{"33 s (30 s and backdating), 11 s left", agent.BackoffBase, agent.BackoffCap, 11 * time.Second, 33 * time.Second, 1100 * time.Millisecond, 1100 * time.Millisecond},
		{"33 s, nothing newer, 11 s left", agent.NothingNewerBase, agent.BackoffCap, 11 * time.Second, 33 * time.Second, 1100 * time.Millisecond, 1100 * time.Millisecond},
		{"33 s, 1 s left: never under MinRetry", agent.BackoffBase, agent.BackoffCap, time.Second, 33 * time.Second, time.Second, time.Second},
		{"90 s, 30 s left", agent.BackoffBase, agent.BackoffCap, 30 * time.Second, 90 * time.Second, 3 * time.Second, 3 * time.Second},
		{"90 s, expired", agent.BackoffBase, agent.BackoffCap, -5 * time.Second, 90 * time.Second, time.Second, time.Second},
		{"1 hour, 20 min left", agent.BackoffBase, agent.BackoffCap, 20 * time.Minute, time.Hour, 10 * time.Second, 2 * time.Minute},
	}
	for _, c := range cases {
		b, cp := agent.RetryBounds(c.base, c.cap, c.left, c.life)
		if b != c.wantBase || cp != c.wantCap {
			t.Errorf("%s: base %s cap %s, want %s %s", c.name, b, cp, c.wantBase, c.wantCap)
		}
	}
}

func TestNothingNewerDelay(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		tries      int
		jitter     float64
		left, life time.Duration
		want       time.Duration
	}{
		{1, 0.999999, 34 * day, 90 * day, 5 * time.Minute},
		{2, 0.999999, 34 * day, 90 * day, 10 * time.Minute},
		{4, 0.999999, 34 * day, 90 * day, 40 * time.Minute},
		{5, 0.999999, 34 * day, 90 * day, time.Hour},
		{50, 0.999999, 34 * day, 90 * day, time.Hour},
		{1, 0, 34 * day, 90 * day, 150 * time.Second},
		{1, 0.999999, 11 * time.Second, 33 * time.Second, 1100 * time.Millisecond},
		{9, 0.999999, 11 * time.Second, 33 * time.Second, 1100 * time.Millisecond},
	}
	for _, c := range cases {
		got := agent.NothingNewerDelay(c.tries, c.jitter, c.left, c.life)
		if d := got - c.want; d < -10*time.Millisecond || d > 10*time.Millisecond {
			t.Errorf("NothingNewerDelay(%d, %v, %s, %s) = %s, want %s", c.tries, c.jitter, c.left, c.life, got, c.want)
		}
	}
}

func TestNextFetch(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour, day := time.Hour, 24*time.Hour
	pull := func(renewAt time.Time, due bool) agent.FetchPlan {
		return agent.FetchPlan{RenewAt: renewAt, Due: due, Interval: hour, Periodic: true, Left: 30 * day, Life: 90 * day}
	}
	csr := func(renewAt time.Time, due bool) agent.FetchPlan {
		p := pull(renewAt, due)
		p.Periodic = false
		return p
	}
	cases := []struct {
		name string
		f    agent.FetchState
		p    agent.FetchPlan
		want time.Time
	}{
		{"first fetch spread over the first interval, by jitter", agent.FetchState{Started: start, Jitter: 0.5}, pull(start.Add(30*day), false), start.Add(30 * time.Minute)},
		{"first fetch, window opening sooner", agent.FetchState{Started: start, Jitter: 0.5}, pull(start.Add(10*time.Minute), false), start.Add(10 * time.Minute)},
		{"nothing installed: at once", agent.FetchState{Started: start, Jitter: 0.5}, pull(start, true), start},
		{"periodic: interval ±10%", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0}, pull(time.Time{}, false), start.Add(hour + 54*time.Minute)},
		{"periodic, full jitter", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.999999}, pull(time.Time{}, false), start.Add(hour + 66*time.Minute)},
		{"entering the renewal window fetches then", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.5}, pull(start.Add(hour+10*time.Minute), false), start.Add(hour + 10*time.Minute)},
		{"in the window and fetched since: periodic", agent.FetchState{Started: start, LastAttempt: start.Add(2 * hour), Jitter: 0.5}, pull(start.Add(hour), true), start.Add(3 * hour)},
		{"failing: backoff", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Failures: 3, Jitter: 0}, pull(start.Add(hour), true), start.Add(hour + 20*time.Second)},
		{"failing a long time: capped", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Failures: 40, Jitter: 0.999999}, pull(time.Time{}, false), start.Add(2*hour - 1800*time.Microsecond)},
		{"due, nothing newer twice: 10 minutes", agent.FetchState{Started: start, LastAttempt: start.Add(hour), NothingNewer: 2, Jitter: 0.999999}, pull(start.Add(hour), true), start.Add(hour + 10*time.Minute - 600*time.Microsecond)},
		{"nothing newer, but no longer due: periodic", agent.FetchState{Started: start, LastAttempt: start.Add(hour), NothingNewer: 2, Jitter: 0}, pull(time.Time{}, false), start.Add(hour + 54*time.Minute)},
		{"csr, not due: at the window", agent.FetchState{Started: start, Jitter: 0.5}, csr(start.Add(30*day), false), start.Add(30 * day)},
		{"csr, window unknown: nothing planned", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.5}, csr(time.Time{}, false), time.Time{}},
		{"csr, entering the window", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Jitter: 0.5}, csr(start.Add(2*hour), true), start.Add(2 * hour)},
		{"csr, failing: backoff", agent.FetchState{Started: start, LastAttempt: start.Add(3 * hour), Failures: 1, Jitter: 0}, csr(start.Add(2*hour), true), start.Add(3*hour + 5*time.Second)},
		{"csr, due and fetched since without news: gently", agent.FetchState{Started: start, LastAttempt: start.Add(3 * hour), Jitter: 0}, csr(start.Add(2*hour), true), start.Add(3*hour + 150*time.Second)},
		{"a 30 s certificate, failing: about a second", agent.FetchState{Started: start, LastAttempt: start.Add(hour), Failures: 5, Jitter: 0.999999},
			agent.FetchPlan{RenewAt: start, Due: true, Interval: hour, Periodic: true, Left: 11 * time.Second, Life: 33 * time.Second}, start.Add(hour + 1100*time.Millisecond)},
	}
	for _, c := range cases {
		got := agent.NextFetch(c.f, c.p)
		if d := got.Sub(c.want); d < -time.Millisecond || d > time.Millisecond || got.IsZero() != c.want.IsZero() {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// Record: a failure counts up and keeps the error; a fetch that brings
// nothing newer while due counts "nothing newer" and is not a failure; a
// renewal or anything outside the window clears both.
func TestFetchStateRecord(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var f agent.FetchState
	f.Record(now, agent.FetchFailed, true, "connection refused", 0.25)
	f.Record(now.Add(time.Second), agent.FetchFailed, true, "connection refused", 0.5)
	if f.Failures != 2 || f.LastError != "connection refused" || f.NothingNewer != 0 || !f.LastSuccess.IsZero() || f.Jitter != 0.5 {
		t.Fatalf("after two failures: %+v", f)
	}
	f.Record(now.Add(2*time.Second), agent.FetchNothingNewer, true, "nothing newer: identical", 0.1)
	f.Record(now.Add(3*time.Second), agent.FetchNothingNewer, true, "nothing newer: identical", 0.1)
	if f.Failures != 0 || f.LastError != "" || f.NothingNewer != 2 || f.LastResult != "nothing newer: identical" || !f.LastSuccess.Equal(now.Add(3*time.Second)) {
		t.Fatalf("after nothing newer twice: %+v", f)
	}
	f.Record(now.Add(4*time.Second), agent.FetchNothingNewer, false, "unchanged", 0.1)
	if f.NothingNewer != 0 {
		t.Fatalf("outside the window an identical bundle is plain success: %+v", f)
	}
	f.Record(now.Add(5*time.Second), agent.FetchNothingNewer, true, "nothing newer", 0.1)
	f.Record(now.Add(6*time.Second), agent.FetchRenewed, true, "installed ..gen-000002", 0.1)
	if f.NothingNewer != 0 || f.Failures != 0 || f.LastResult != "installed ..gen-000002" || !f.LastAttempt.Equal(now.Add(6*time.Second)) {
		t.Fatalf("after the renewal: %+v", f)
	}
}

// The safety net starts 10% of the lifetime or 24 hours before expiry,
// whichever is less, and stays on once expired.
func TestPlanRenewalCritical(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		name     string
		life     time.Duration
		now      time.Duration // after NotBefore
		critical time.Duration // CriticalAt after NotBefore
		want     bool
	}{
		{"90 days, in the window", 90 * day, 70 * day, 89 * day, false},
		{"90 days, 23 hours left", 90 * day, 89*day + time.Hour, 89 * day, true},
		{"90 days, expired", 90 * day, 91 * day, 89 * day, true},
		{"2 days: 10% is 4.8 hours", 2 * day, 43 * time.Hour, 2*day - 288*time.Minute, false},
		{"2 days: 4 hours left", 2 * day, 44 * time.Hour, 2*day - 288*time.Minute, true},
		{"90 seconds: 9 seconds", 90 * time.Second, 82 * time.Second, 81 * time.Second, true},
	}
	for _, c := range cases {
		p := agent.PlanRenewal(t0.Add(c.now), &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(c.life)}, rotate.RenewalPolicy{}, 0)
		if p.Critical != c.want || !p.CriticalAt.Equal(t0.Add(c.critical)) {
			t.Errorf("%s: critical %v at +%s, want %v at +%s", c.name, p.Critical, p.CriticalAt.Sub(t0), c.want, c.critical)
		}
	}
}
