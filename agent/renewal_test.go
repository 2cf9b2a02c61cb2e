//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// publishTo writes a bundle where a fakeSource serves it from.
func publishTo(t *testing.T, dir string, ca, leaf *testpki.Pair) {
	t.Helper()
	testpki.WriteFile(t, dir, "node.crt", leaf.CertPEM(), 0o644)
	testpki.WriteFile(t, dir, "node.key", leaf.KeyPEM(t), 0o600)
	testpki.WriteFile(t, dir, "cluster.crt", ca.CertPEM(), 0o644)
}

// In its renewal window, a source that answers with the live bundle has
// nothing newer: that is not success. The agent says so (log, state,
// check WARNING, metric), keeps asking on the gentle schedule, and
// installs once the admin host has re-issued; a stale bundle older than
// the live one is nothing newer too, never installed.
func TestDaemonKeepsAskingWhenTheSourceHasNothingNewer(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	// A 60-second certificate 45 s in: due, 15 s left, so the gentle
	// schedule (5 minutes for a real certificate) is about a second.
	live := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-45 * time.Second), NotAfter: now.Add(15 * time.Second)})
	f.install(t, live)
	srcDir := t.TempDir()
	stale := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * time.Second)})
	publishTo(t, srcDir, f.ca, stale)
	src := &fakeSource{dir: srcDir}
	stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src }})
	eventually(t, "nothing newer, twice", func() bool {
		return strings.Count(log.String(), "renewal due; source has nothing newer") >= 2
	})
	publishTo(t, srcDir, f.ca, live) // identical to the live bundle
	calls := src.Calls()
	eventually(t, "a fetch of the identical bundle", func() bool { return src.Calls() > calls+1 })
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	b := st.Bundles[0]
	if b.Source == nil || b.Source.NothingNewer < 3 || b.Source.Failures != 0 || !strings.HasPrefix(b.Source.LastResult, "nothing newer") || b.Counters.Installs != 0 {
		t.Fatalf("state while the source has nothing newer: %+v source %+v", b, b.Source)
	}
	if h, text := b.Health(); h != rotate.Warning || !strings.Contains(text, "renewal due; source has nothing newer") {
		t.Fatalf("health %s %q", h, text)
	}
	var buf bytes.Buffer
	agent.WriteMetrics(&buf, now, st.Bundles, time.Now())
	if !strings.Contains(buf.String(), `certkeeper_source_nothing_newer{bundle="b"} `) || strings.Contains(buf.String(), `certkeeper_source_nothing_newer{bundle="b"} 0`) {
		t.Fatalf("metrics:\n%s", buf.String())
	}
	if f.reloadCount() != 0 {
		t.Fatal("nothing newer reloaded")
	}
	// The admin host re-issues: the next try installs it, once.
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Second), NotAfter: now.Add(time.Hour)})
	publishTo(t, srcDir, f.ca, renewed)
	eventually(t, "the renewed certificate", func() bool { return strings.Contains(log.String(), "msg=installed") })
	time.Sleep(200 * time.Millisecond)
	stop()
	if f.reloadCount() != 1 || strings.Count(log.String(), "msg=installed") != 1 {
		t.Fatalf("%d reloads, want 1\n%s", f.reloadCount(), log)
	}
	st, _ = agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if b := st.Bundles[0]; b.Source.NothingNewer != 0 || b.RenewalDue {
		t.Fatalf("after the renewal: %+v", b.Source)
	}
}

// The safety net: a certificate within its critical threshold (here 23
// hours left of 90 days) that can not be renewed gives an error in the log
// once an hour, not at every wake of the loop, a CRITICAL health and a
// metric.
func TestDaemonRaisesTheAlarmWithinTheCriticalThresholdOnceAnHour(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	os.WriteFile(f.config, bytes.Replace(cfg, []byte("state_dir"), []byte("rescan_interval = \"1s\"\nstate_dir"), 1), 0o600)
	now := time.Now()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-89*24*time.Hour - time.Hour), NotAfter: now.Add(23 * time.Hour)}))
	src := &fakeSource{dir: t.TempDir(), fail: 1 << 30}
	var offset atomic.Int64
	stop, log := run(t, f, agent.Options{
		SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src },
		Now:       func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	const alarm = "certificate about to expire without a renewal"
	eventually(t, "the alarm", func() bool { return strings.Contains(log.String(), alarm) })
	time.Sleep(2500 * time.Millisecond) // rescans every second
	if n := strings.Count(log.String(), alarm); n != 1 {
		t.Fatalf("the alarm was logged %d times in 2.5 s, want once\n%s", n, log)
	}
	if !strings.Contains(log.String(), "level=ERROR msg=\""+alarm) || !strings.Contains(log.String(), "fetches from the source failed") {
		t.Fatalf("the alarm is not an error saying why:\n%s", log)
	}
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	b := st.Bundles[0]
	if h, text := b.Health(); !b.ExpiryCritical || h != rotate.Critical || !strings.Contains(text, "has not been renewed") || !strings.Contains(text, "unreachable") {
		t.Fatalf("health %s %q (%+v)", h, text, b)
	}
	var buf bytes.Buffer
	agent.WriteMetrics(&buf, now, st.Bundles, time.Now())
	for _, want := range []string{`certkeeper_bundle_expiry_critical{bundle="b"} 1`, `certkeeper_bundle_health{bundle="b"} 2`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// An hour later (by the agent's clock), once more.
	offset.Store(int64(time.Hour + time.Minute))
	eventually(t, "the alarm an hour later", func() bool { return strings.Count(log.String(), alarm) == 2 })
	stop()
}

// An expired bundle still renews by pull: InstallNewer takes a newer valid
// leaf while the live one has expired.
func TestExpiredBundleRenewsByPull(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.ca = testpki.NewCA(t, "cluster", testpki.Options{NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour)})
	cfg, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	expired := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	m := rotate.NewManager(cfg.Bundles[0].Spec())
	m.Now = func() time.Time { return now.Add(-90 * time.Minute) } // installed while it was valid
	if _, err := m.Install([]rotate.Input{{Name: "c", Data: expired.CertPEM()}, {Name: "k", Data: expired.KeyPEM(t)}, {Name: "ca", Data: f.ca.CertPEM()}}, "test"); err != nil {
		t.Fatal(err)
	}
	srcDir := t.TempDir()
	src := &fakeSource{dir: srcDir}
	publishTo(t, srcDir, f.ca, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(-90 * time.Minute)}))
	_, err = agent.RenewNow(context.Background(), cfg, &cfg.Bundles[0], src, false, now, quiet)
	if !errors.Is(err, agent.ErrNothingNewer) || !strings.Contains(err.Error(), "older than the live one") {
		t.Fatalf("an older bundle for an expired one: %v", err)
	}
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	publishTo(t, srcDir, f.ca, renewed)
	r, err := agent.RenewNow(context.Background(), cfg, &cfg.Bundles[0], src, false, now, quiet)
	if err != nil || r.NotDue || r.Leaf.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 || f.reloadCount() != 1 {
		t.Fatalf("%+v %v, %d reloads", r, err, f.reloadCount())
	}
	// Now fresh and not due: renew asks nobody; --force asks, and the same
	// bundle is nothing newer.
	calls := src.Calls()
	if r, err := agent.RenewNow(context.Background(), cfg, &cfg.Bundles[0], src, false, now, quiet); err != nil || !r.NotDue || src.Calls() != calls {
		t.Fatalf("not due: %+v %v", r, err)
	}
	if _, err := agent.RenewNow(context.Background(), cfg, &cfg.Bundles[0], src, true, now, quiet); !errors.Is(err, agent.ErrNothingNewer) {
		t.Fatalf("forced, identical: %v", err)
	}
	if _, err := agent.RenewNow(context.Background(), cfg, &cfg.Bundles[0], nil, true, now, quiet); err == nil || !strings.Contains(err.Error(), "no source") {
		t.Fatalf("no source: %v", err)
	}
}

// The agent's view of a renewal belongs to the certificate it saw: once
// another one is live (installed by hand while the agent was stopped),
// its "critical" and "due" are not reported against the new one.
func TestReportsIgnoreAStaleRenewalView(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-89 * 24 * time.Hour), NotAfter: now.Add(time.Hour)}))
	src := &fakeSource{dir: t.TempDir(), fail: 1 << 30}
	stop, _ := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src }})
	cfg, _ := agent.LoadConfig(f.config)
	eventually(t, "the agent's critical view", func() bool {
		r := agent.Reports(cfg)
		return r[0].Agent != nil && r[0].Agent.ExpiryCritical && r[0].Health == rotate.Critical
	})
	stop()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)}))
	if r := agent.Reports(cfg)[0]; r.Health != rotate.OK {
		t.Fatalf("after a fresh install: %s %q", r.Health, r.HealthText)
	}
}
