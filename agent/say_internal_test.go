package agent

import (
	"testing"
	"time"
)

// The loop's one rate limiter: a lasting condition is said once, again
// when it changes or comes back, and (every) again after its interval.
func TestSayOnce(t *testing.T) {
	var s sayOnce
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name string
		said bool
		f    func() bool
	}{
		{"a new error is said", true, func() bool { return s.changed("repair", "e1") }},
		{"the same error is not", false, func() bool { return s.changed("repair", "e1") }},
		{"another error is", true, func() bool { return s.changed("repair", "e2") }},
		{"its end is remembered", true, func() bool { return s.changed("repair", "") }},
		{"and its return said again", true, func() bool { return s.changed("repair", "e2") }},
		{"keys are apart", true, func() bool { return s.changed("inbox", "e2") }},
		{"a policy error once per certificate", true, func() bool { return s.sticky("policy", "fp1") }},
		{"not twice", false, func() bool { return s.sticky("policy", "fp1") }},
		{"nothing to say is never said", false, func() bool { return s.sticky("policy", "") }},
		{"nor does it reset", false, func() bool { return s.sticky("policy", "fp1") }},
		{"every: first time", true, func() bool { return s.every("due", "fp1", t0, time.Hour) }},
		{"every: within the hour", false, func() bool { return s.every("due", "fp1", t0.Add(59*time.Minute), time.Hour) }},
		{"every: after the hour", true, func() bool { return s.every("due", "fp1", t0.Add(61*time.Minute), time.Hour) }},
		{"every: another certificate at once", true, func() bool { return s.every("due", "fp2", t0.Add(62*time.Minute), time.Hour) }},
	}
	for _, st := range steps {
		if got := st.f(); got != st.said {
			t.Fatalf("%s: said %v, want %v", st.name, got, st.said)
		}
	}
}
