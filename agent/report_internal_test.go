package agent

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/fleet"
)

// The agent's save writes the fleet report beside the state: 0644, what
// fleet status reads, with the bundle's serial, served serial, check and
// health; and it is rewritten only when its content changes.
func TestSaveWritesTheFleetReport(t *testing.T) {
	c := &Config{StateDir: t.TempDir(), NodeID: "n1", Bundles: []Bundle{{Name: "b", NodeID: "n1"}}}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	st := &bundleState{s: BundleState{Name: "b", Serial: "0A:0B", NotAfter: now.Add(time.Hour),
		LastCheck: &Event{Time: now, Result: ResultOK},
		LastError: &Event{Time: now, Result: ResultFailed, Detail: "reload: exit status 1"},
		Served:    &ServedState{Serial: "0A:0C", Checked: now}}}
	d := &daemon{config: c, states: map[string]*bundleState{"b": st}, order: []string{"b"}, opts: Options{Version: "9.9"},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	d.saveState()
	fi, err := os.Stat(ReportPath(c))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
		t.Errorf("report mode %v, want 0644", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(ReportPath(c))
	r, err := fleet.ParseReport(data)
	if err != nil {
		t.Fatal(err)
	}
	b := r.Bundles[0]
	if r.NodeID != "n1" || r.AgentVersion != "9.9" || b.Serial != "0A:0B" || b.ServedSerial != "0A:0C" || b.LastCheck != "ok" || b.LastError != "reload: exit status 1" || b.Health != "OK" || !r.Written.Equal(now) {
		t.Fatalf("%+v", r)
	}
	now = now.Add(time.Minute)
	d.saveState()
	data2, _ := os.ReadFile(ReportPath(c))
	if string(data2) != string(data) {
		t.Error("the report was rewritten though nothing in it changed")
	}
}
