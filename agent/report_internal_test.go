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
		Served:    &ServedState{Serial: "0A:0B", LiveSerial: "0A:0B", Match: true, Checked: now}}}
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
	if r.NodeID != "n1" || r.AgentVersion != "9.9" || b.Serial != "0A:0B" || b.ServedSerial != "0A:0B" || b.LastCheck != "ok" || b.LastError != "reload: exit status 1" || b.Health != "OK" || !r.Written.Equal(now) {
		t.Fatalf("%+v", r)
	}
	now = now.Add(time.Minute)
	d.saveState()
	data2, _ := os.ReadFile(ReportPath(c))
	if string(data2) != string(data) {
		t.Error("the report was rewritten though nothing in it changed")
	}
}

// When the report is written: on a change always; unchanged, only while
// the agent is alive and half a heartbeat has passed since the last
// write (ticks every half heartbeat keep it younger than one).
func TestReportDue(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const hb = 5 * time.Minute
	for _, c := range []struct {
		name    string
		changed bool
		last    time.Time
		now     time.Time
		alive   bool
		want    bool
	}{
		{"never written", false, time.Time{}, t0, false, true},
		{"changed", true, t0, t0, true, true},
		{"changed, loops stuck", true, t0, t0, false, true},
		{"unchanged, just written", false, t0, t0.Add(time.Minute), true, false},
		{"unchanged, half a heartbeat", false, t0, t0.Add(hb / 2), true, true},
		{"unchanged, a heartbeat", false, t0, t0.Add(hb), true, true},
		{"unchanged, loops stuck", false, t0, t0.Add(time.Hour), false, false},
		{"clock went back", false, t0, t0.Add(-time.Hour), true, false},
	} {
		if got := ReportDue(c.changed, c.last, c.now, hb, c.alive); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// Unchanged, the report is rewritten once its heartbeat is due: its
// written time moves on and it says its heartbeat, so fleet status can
// tell a running agent from a dead one.
func TestSaveRewritesTheReportOnItsHeartbeat(t *testing.T) {
	c := &Config{StateDir: t.TempDir(), NodeID: "n1", Bundles: []Bundle{{Name: "b", NodeID: "n1"}}}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	st := &bundleState{s: BundleState{Name: "b", Serial: "0A:0B", NotAfter: now.Add(time.Hour)}}
	d := &daemon{config: c, states: map[string]*bundleState{"b": st}, order: []string{"b"}, opts: Options{ReportHeartbeat: 4 * time.Minute},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	read := func() *fleet.Report {
		t.Helper()
		data, err := os.ReadFile(ReportPath(c))
		if err != nil {
			t.Fatal(err)
		}
		r, err := fleet.ParseReport(data)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	d.saveState()
	first := now
	if r := read(); !r.Written.Equal(first) || r.Heartbeat != 240 {
		t.Fatalf("written %v heartbeat %v", r.Written, r.Heartbeat)
	}
	now = now.Add(time.Minute)
	d.saveState()
	if r := read(); !r.Written.Equal(first) {
		t.Fatalf("rewritten after a minute: %v", r.Written)
	}
	now = now.Add(time.Minute)
	d.saveState()
	if r := read(); !r.Written.Equal(now) || r.Bundles[0].Serial != "0A:0B" {
		t.Fatalf("not rewritten after half a heartbeat: %+v", r)
	}
}

// A bundle without a check command says so in the report, so that push
// --canary confirms it by its serial, reload and health instead of
// waiting for a check that never runs.
func TestReportSaysWhichBundlesHaveNoCheck(t *testing.T) {
	c := &Config{NodeID: "n1", Bundles: []Bundle{{Name: "plain", NodeID: "n1"}, {Name: "checked", NodeID: "n1", Check: []string{"/bin/true"}}}}
	r := BuildReport(c, "9.9", 1, []BundleState{{Name: "plain"}, {Name: "checked"}}, time.Now(), time.Time{})
	if !r.Bundles[0].NoCheck || r.Bundles[1].NoCheck {
		t.Errorf("no_check: plain %v, checked %v; want true, false", r.Bundles[0].NoCheck, r.Bundles[1].NoCheck)
	}
}

// The report says when the agent last took a delivery, installed or found
// already live, so a rollout can tell a push it has seen from one it has
// not when nothing changes.
func TestReportSaysWhenADeliveryWasTaken(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := &Config{NodeID: "n1", Bundles: []Bundle{{Name: "b", NodeID: "n1"}}}
	r := BuildReport(c, "9.9", 1, []BundleState{{Name: "b", LastInstall: &Event{Time: now, Result: ResultUnchanged}}}, now, time.Time{})
	if b := r.Bundles[0]; !b.LastDelivery.Equal(now) || !b.LastChange.IsZero() {
		t.Errorf("an unchanged delivery: last_delivery %v, last_change %v", b.LastDelivery, b.LastChange)
	}
}

// The config's report_heartbeat is the daemon's heartbeat (and the one the
// report states); a test's Options.ReportHeartbeat still wins.
func TestReportHeartbeatFromConfig(t *testing.T) {
	c := &Config{ReportHeartbeat: Duration{20 * time.Minute}}
	if h := (&daemon{config: c}).reportHeartbeat(); h != 20*time.Minute {
		t.Fatalf("heartbeat from the config: %s", h)
	}
	if h := (&daemon{config: c, opts: Options{ReportHeartbeat: time.Second}}).reportHeartbeat(); h != time.Second {
		t.Fatalf("heartbeat from the options: %s", h)
	}
	if h := (&daemon{config: &Config{}}).reportHeartbeat(); h != DefaultReportHeartbeat {
		t.Fatalf("default heartbeat: %s", h)
	}
}
