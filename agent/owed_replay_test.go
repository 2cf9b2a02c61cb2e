//go:build unix

package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// oweLiveReload writes, beside a running agent, the record a change
// leaves when its reload never ran (a `certkeeper install` killed after
// its swap, whose swap the agent's watch missed): the live generation is
// owed its reload. Nothing the agent watches changes, so only a loop step
// that reads the record (start-up, SIGHUP, a rescan) can pay it.
func (f *fixture) oweLiveReload(t *testing.T) {
	t.Helper()
	gen, err := os.Readlink(filepath.Join(f.live, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.root, "state", "owed")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`{"generation": %q, "since": %q, "source": "install: killed after its swap", "reload": true, "check": false}`, gen, time.Now().Format(time.RFC3339Nano))
	testpki.WriteFile(t, dir, "b.json.tmp", []byte(data), 0o600)
	if err := os.Rename(filepath.Join(dir, "b.json.tmp"), filepath.Join(dir, "b.json")); err != nil {
		t.Fatal(err)
	}
}

// rescanEvery sets the config's rescan_interval.
func (f *fixture) rescanEvery(t *testing.T, d string) {
	t.Helper()
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte("state_dir"), []byte("rescan_interval = \""+d+"\"\nstate_dir"), 1), 0o600)
}

// An owed reload found by SIGHUP's restart of the loops runs once: not
// before the SIGHUP (nothing told the agent), once after it, and not
// again on a second SIGHUP.
func TestAReloadOwedIsRunOnceAfterSIGHUP(t *testing.T) {
	f := newFixture(t)
	f.rescanEvery(t, "1h")
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
	var n notes
	hup := make(chan struct{}, 1)
	stop, log := run(t, f, agent.Options{Notify: n.add, Hangup: hup})
	eventually(t, "READY=1", func() bool { return slices.Contains(n.all(), "READY=1") })
	f.oweLiveReload(t)
	time.Sleep(300 * time.Millisecond)
	if c := f.reloadCount(); c != 0 {
		t.Fatalf("%d reloads before the SIGHUP: the test would not test the SIGHUP\n%s", c, log)
	}
	hups := func() int { return strings.Count(log.String(), "config reloaded") }
	hup <- struct{}{}
	eventually(t, "the owed reload after SIGHUP", func() bool { return f.reloadCount() == 1 })
	eventually(t, "the owed record to be paid", func() bool {
		_, err := os.Stat(filepath.Join(f.root, "state", "owed", "b.json"))
		return os.IsNotExist(err)
	})
	hup <- struct{}{}
	eventually(t, "the second SIGHUP", func() bool { return hups() == 2 })
	time.Sleep(300 * time.Millisecond)
	stop()
	if c := f.reloadCount(); c != 1 {
		t.Fatalf("%d reloads for one owed reload and two SIGHUPs, want 1\n%s", c, log)
	}
}

// An owed reload found by a rescan runs once, and the rescans after it do
// not run it again.
func TestAReloadOwedIsRunOnceByARescan(t *testing.T) {
	f := newFixture(t)
	f.rescanEvery(t, "1s")
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
	var n notes
	stop, log := run(t, f, agent.Options{Notify: n.add})
	eventually(t, "READY=1", func() bool { return slices.Contains(n.all(), "READY=1") })
	f.oweLiveReload(t)
	owed := time.Now()
	eventually(t, "the owed reload on a rescan", func() bool { return f.reloadCount() == 1 })
	t.Logf("the rescan ran the owed reload %s after the record appeared", time.Since(owed).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond) // two more rescans
	stop()
	if c := f.reloadCount(); c != 1 {
		t.Fatalf("%d reloads for one owed reload over three rescans, want 1\n%s", c, log)
	}
	if strings.Contains(log.String(), "cannot read the owed actions") {
		t.Fatalf("the record was misread:\n%s", log)
	}
}

// certkeeper_bundle_reload_owed is 1 while the live generation is owed
// its reload (here a reload that waits for the test), and 0 once it ran.
func TestTheReloadOwedMetric(t *testing.T) {
	f := newFixture(t)
	gate := filepath.Join(f.root, "gate")
	prom := filepath.Join(f.root, "metrics.prom")
	cfg, _ := os.ReadFile(f.config)
	// The reload waits (bounded: 15 s) for the gate file.
	cfg = bytes.Replace(cfg, []byte(`"/bin/sh", "-c", "echo reload`), []byte(`"/bin/sh", "-c", "i=0; while [ ! -e `+gate+` ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; echo reload`), 1)
	cfg = bytes.Replace(cfg, []byte("state_dir"), []byte(fmt.Sprintf("metrics_textfile = %q\nstate_dir", prom)), 1)
	testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
	f.oweLiveReload(t)
	metric := func() string {
		m, _ := os.ReadFile(prom)
		for _, line := range strings.Split(string(m), "\n") {
			if strings.HasPrefix(line, `certkeeper_bundle_reload_owed{bundle="b"} `) {
				return line
			}
		}
		return ""
	}
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the metric saying the reload is owed", func() bool { return strings.HasSuffix(metric(), " 1") })
	if c := f.reloadCount(); c != 0 {
		t.Fatalf("the reload finished before the gate opened\n%s", log)
	}
	testpki.WriteFile(t, f.root, "gate", nil, 0o600)
	eventually(t, "the metric saying nothing is owed", func() bool { return strings.HasSuffix(metric(), " 0") })
	stop()
	if c := f.reloadCount(); c != 1 {
		t.Fatalf("%d reloads, want 1\n%s", c, log)
	}
}
