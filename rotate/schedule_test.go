package rotate_test

import (
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

func TestRenewalTime(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		name      string
		life      time.Duration
		policy    rotate.RenewalPolicy
		jitter    float64
		want      time.Duration // after notBefore
		wantError string
	}{
		{name: "90 days, default, no jitter", life: 90 * day, want: 60 * day},
		{name: "90 days, default, full jitter", life: 90 * day, jitter: 0.999999, want: 60*day - time.Duration(float64(90*day)*0.05*0.999999)},
		{name: "90 days, half jitter", life: 90 * day, jitter: 0.5, want: 60*day - time.Duration(float64(90*day)*0.025)},
		{name: "30 seconds, default", life: 30 * time.Second, want: 20 * time.Second},
		{name: "10 years", life: 3650 * day, want: time.Duration(float64(3650*day) * 2 / 3)},
		{name: "renew_before 720h", life: 90 * day, policy: rotate.RenewalPolicy{Before: 720 * time.Hour}, want: 60 * day},
		{name: "renew_at 0.5", life: 90 * day, policy: rotate.RenewalPolicy{At: 0.5}, want: 45 * day},
		{name: "jitter never goes before issue", life: time.Hour, policy: rotate.RenewalPolicy{At: 0.01}, jitter: 0.9, want: 0},
		{name: "renew_before at the lifetime", life: 30 * day, policy: rotate.RenewalPolicy{Before: 30 * day}, wantError: "renew in a loop"},
		{name: "renew_before beyond the lifetime", life: 30 * day, policy: rotate.RenewalPolicy{Before: 720 * time.Hour * 2}, wantError: "renew in a loop"},
		{name: "renew_at 1", life: 30 * day, policy: rotate.RenewalPolicy{At: 1}, wantError: "between 0 and 1"},
		{name: "both", life: 30 * day, policy: rotate.RenewalPolicy{At: 0.5, Before: time.Hour}, wantError: "both set"},
		{name: "zero lifetime", life: 0, wantError: "lifetime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := rotate.RenewalTime(t0, t0.Add(c.life), c.policy, c.jitter)
			if c.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantError) {
					t.Fatalf("RenewalTime = %v, %v; want error %q", got, err, c.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := got.Sub(t0); d != c.want {
				t.Fatalf("renewal %s after issue, want %s", d, c.want)
			}
		})
	}
}

// ExpiryHealth with an injected clock: already expired, not yet valid,
// in the window, critical.
func TestExpiryHealth(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	renew, _ := rotate.RenewalTime(nb, na, rotate.RenewalPolicy{}, 0)
	for _, c := range []struct {
		now  time.Time
		want rotate.Health
		text string
	}{
		{nb.Add(time.Hour), rotate.OK, "renewal in"},
		{renew.Add(time.Minute), rotate.Warning, "renewal window"},
		{na.Add(-23 * time.Hour), rotate.Critical, "has not been renewed"},
		{na.Add(time.Hour), rotate.Critical, "expired"},
		{nb.Add(-time.Hour), rotate.Critical, "not valid until"},
	} {
		h, text := rotate.ExpiryHealth(c.now, nb, na, renew)
		if h != c.want || !strings.Contains(text, c.text) {
			t.Errorf("at %s: %s %q, want %s %q", c.now, h, text, c.want, c.text)
		}
	}
	// 30-second certificates: critical is 10% of the lifetime (3s), not 24h.
	if d := rotate.CriticalThreshold(nb, nb.Add(30*time.Second)); d != 3*time.Second {
		t.Errorf("critical threshold for 30s = %s", d)
	}
	if d := rotate.CriticalThreshold(nb, na); d != 24*time.Hour {
		t.Errorf("critical threshold for 90d = %s", d)
	}
}
