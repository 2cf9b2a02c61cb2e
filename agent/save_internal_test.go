package agent

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// Two bundles' loops save the state at once: the one that writes last
// writes what is newest, never a snapshot it took before the other wrote.
func TestSaveWritesTheNewestSnapshot(t *testing.T) {
	c := &Config{StateDir: t.TempDir()}
	st := &bundleState{s: BundleState{Name: "b"}}
	d := &daemon{config: c, states: map[string]*bundleState{"b": st}, order: []string{"b"},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	st.update(func(s *BundleState) { s.Counters.Installs = 1 })

	d.saveMu.Lock() // another loop is writing
	done := make(chan struct{})
	go func() { defer close(done); d.saveState() }()
	time.Sleep(50 * time.Millisecond) // the second save is waiting for the first
	st.update(func(s *BundleState) { s.Counters.Installs = 2 })
	d.saveMu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("save did not return")
	}
	got, err := ReadState(c)
	if err != nil || got == nil || len(got.Bundles) != 1 {
		t.Fatalf("state: %+v %v", got, err)
	}
	if n := got.Bundles[0].Counters.Installs; n != 2 {
		t.Fatalf("the state file says %d installs, want 2: an older snapshot overwrote a newer one", n)
	}
}

// The watchdog gives a step as long as the bundle's reloads and check may
// legally take (each capped by the config), and no longer.
func TestWatchdogAllowsALegalLongStep(t *testing.T) {
	b := &Bundle{Reload: []Reload{{Command: []string{"reload"}, Timeout: Duration{MaxReloadTimeout}}},
		Check: []string{"check"}, CheckTimeout: Duration{MaxCheckTimeout}}
	l := &bundleLoop{b: b}
	rl := &runningLoop{l: l}
	rl.alive.Store(true)
	d := &daemon{loops: []*runningLoop{rl}}
	cases := []struct {
		running time.Duration
		healthy bool
	}{
		{time.Minute, true},
		{20 * time.Minute, true}, // reload, check failed, rollback, reload again
		{40 * time.Minute, false},
	}
	for _, c := range cases {
		l.stepStart.Store(time.Now().Add(-c.running).UnixNano())
		if got := d.loopsHealthy(); got != c.healthy {
			t.Errorf("a step running for %s: healthy %v, want %v", c.running, got, c.healthy)
		}
	}
	if got, want := b.longestStep(), 3*MaxReloadTimeout+time.Minute; got != want {
		t.Errorf("longest step %s, want %s", got, want)
	}
}
