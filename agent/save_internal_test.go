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
