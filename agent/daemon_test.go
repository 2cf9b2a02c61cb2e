//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// fakeSource serves the files of a directory, after failing a number of
// times.
type fakeSource struct {
	mu    sync.Mutex
	dir   string
	fail  int
	calls int
}

func (f *fakeSource) Fetch(_ context.Context, b *agent.Bundle) ([]rotate.Input, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fail {
		return nil, errors.New("admin host unreachable (fake)")
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, filepath.Join(f.dir, e.Name()))
	}
	return agent.ReadInputs(paths)
}

func (f *fakeSource) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type notes struct {
	mu sync.Mutex
	s  []string
}

func (n *notes) add(s string) { n.mu.Lock(); n.s = append(n.s, s); n.mu.Unlock() }
func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.s)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

type fixture struct {
	root, config, live, reloads string
	ca                          *testpki.Pair
}

func newFixture(t *testing.T) *fixture {
	root := t.TempDir()
	f := &fixture{root: root, config: filepath.Join(root, "c.toml"), live: filepath.Join(root, "live"), reloads: filepath.Join(root, "reloads"),
		ca: testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(365 * 24 * time.Hour)})}
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[source]
address = "admin.invalid:22"
user = "node-1"
known_hosts = "/dev/null"

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q

  [[bundle.reload]]
  command = ["/bin/sh", "-c", "echo reload >> %s"]
`, filepath.Join(root, "state"), f.live, f.reloads)
	testpki.WriteFile(t, root, "c.toml", []byte(cfg), 0o600)
	return f
}

func (f *fixture) reloadCount() int {
	b, _ := os.ReadFile(f.reloads)
	return strings.Count(string(b), "reload")
}

func (f *fixture) install(t *testing.T, p *testpki.Pair) {
	cfg, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	m := rotate.NewManager(cfg.Bundles[0].Spec())
	if _, err := m.Install([]rotate.Input{{Name: "c", Data: p.CertPEM()}, {Name: "k", Data: p.KeyPEM(t)}, {Name: "ca", Data: f.ca.CertPEM()}}, "test"); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, f *fixture, o agent.Options) (stop func(), log *syncBuffer) {
	log = &syncBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, f.config, o) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop, log
}

// A bundle in its renewal window with a Source: the daemon fetches at
// once, installs the newer bundle with one reload, and reports it; the
// sd_notify-style states come in order.
func TestDaemonFetchesFromItsSourceInTheRenewalWindow(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	old := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	f.install(t, old)
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)})
	srcDir := t.TempDir()
	testpki.WriteFile(t, srcDir, "node.crt", renewed.CertPEM(), 0o644)
	testpki.WriteFile(t, srcDir, "node.key", renewed.KeyPEM(t), 0o600)
	src := &fakeSource{dir: srcDir}
	var n notes
	hup := make(chan struct{}, 1)
	stop, log := run(t, f, agent.Options{
		SourceFor:        func(*agent.Config, *agent.Bundle) agent.Source { return src },
		Notify:           n.add,
		WatchdogInterval: 20 * time.Millisecond,
		Hangup:           hup,
	})
	eventually(t, "the renewed certificate to be live", func() bool {
		b, _ := os.ReadFile(filepath.Join(f.live, "node.crt"))
		return bytes.Equal(b, renewed.CertPEM())
	})
	eventually(t, "READY=1 and WATCHDOG=1", func() bool {
		a := n.all()
		return slices.Contains(a, "READY=1") && slices.Contains(a, "WATCHDOG=1")
	})
	hup <- struct{}{}
	eventually(t, "the reload to be done", func() bool {
		a := n.all()
		i := slices.Index(a, "RELOADING=1")
		return i >= 0 && slices.Contains(a[i:], "READY=1")
	})
	stop()
	a := n.all()
	if a[len(a)-1] != "STOPPING=1" {
		t.Fatalf("last state %q, want STOPPING=1: %v", a[len(a)-1], a)
	}
	if c := f.reloadCount(); c != 1 {
		t.Fatalf("%d reloads, want 1\n%s", c, log)
	}
	st, err := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if err != nil || st == nil || len(st.Bundles) != 1 {
		t.Fatalf("state: %+v %v", st, err)
	}
	b := st.Bundles[0]
	if b.Source == nil || !strings.HasPrefix(b.Source.LastResult, "installed") || b.Counters.Installs != 1 || b.RenewalDue || b.Source.NextTry.IsZero() {
		t.Fatalf("state after the fetch: %+v source %+v", b, b.Source)
	}
}

// A failing Source: the error and the next try show in the state and the
// metrics, the retry waits for the backoff, and the bundle stays as it is.
func TestDaemonBacksOffAFailingSource(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	old := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	f.install(t, old)
	src := &fakeSource{dir: t.TempDir(), fail: 100}
	stop, log := run(t, f, agent.Options{
		SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src },
		Rand:      func() float64 { return 0 },
	})
	eventually(t, "a failed fetch", func() bool { return src.Calls() == 1 && strings.Contains(log.String(), "fetch from the source failed") })
	time.Sleep(300 * time.Millisecond)
	if c := src.Calls(); c != 1 {
		t.Fatalf("%d calls within 300ms: no backoff", c)
	}
	stop()
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	b := st.Bundles[0]
	if b.Source == nil || b.Source.Failures != 1 || !strings.Contains(b.Source.LastError, "unreachable") || b.Counters.SourceErrors != 1 {
		t.Fatalf("state: %+v", b.Source)
	}
	if d := b.Source.NextTry.Sub(b.Source.LastAttempt); d != agent.Backoff(1, 0, 10*24*time.Hour, 90*24*time.Hour) {
		t.Fatalf("next try %s after the failure, want %s", d, agent.Backoff(1, 0, 10*24*time.Hour, 90*24*time.Hour))
	}
	if h, text := b.Health(); h != rotate.Warning || !strings.Contains(text, "renewal due") {
		t.Fatalf("health %s %q", h, text)
	}
	var buf bytes.Buffer
	agent.WriteMetrics(&buf, now, st.Bundles, time.Now())
	for _, want := range []string{`certkeeper_source_errors_total{bundle="b"} 1`, `certkeeper_source_consecutive_failures{bundle="b"} 1`, `certkeeper_bundle_renewal_due{bundle="b"} 1`, `certkeeper_source_next_try_timestamp_seconds{bundle="b"}`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

// Without a Source a due renewal warns (once) and shows in the state.
func TestDaemonWarnsOfADueRenewalWithoutASource(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}))
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the warning", func() bool { return strings.Contains(log.String(), "renewal due, and this bundle has no source") })
	stop()
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if b := st.Bundles[0]; !b.RenewalDue || b.RenewAt.IsZero() || b.Source != nil {
		t.Fatalf("state: %+v", b)
	}
}

// renew_before beyond the installed certificate's lifetime is reported as
// a config error once, and never acted on in a loop.
func TestDaemonReportsARenewalPolicyThatDoesNotFit(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	os.WriteFile(f.config, bytes.Replace(cfg, []byte("\ndir = "), []byte("\nrenew_before = \"30d\"\ndir = "), 1), 0o600)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(7 * 24 * time.Hour)}))
	src := &fakeSource{dir: t.TempDir()}
	stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src }})
	eventually(t, "the error", func() bool { return strings.Contains(log.String(), "does not fit the installed certificate") })
	time.Sleep(200 * time.Millisecond)
	stop()
	if c := strings.Count(log.String(), "does not fit"); c != 1 {
		t.Fatalf("logged %d times", c)
	}
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if b := st.Bundles[0]; !strings.Contains(b.RenewalError, "renew_before 720h0m0s is at or beyond the certificate's lifetime") || b.RenewalDue {
		t.Fatalf("state: %+v", b)
	}
	if src.Calls() > 1 {
		t.Fatalf("the source was called %d times: a renewal loop", src.Calls())
	}
}

// A restarted agent continues its pull schedule from the state file: a
// fleet restarted together (a package upgrade) does not call the admin
// host all at once, as it would if each started its schedule afresh.
func TestDaemonRestartContinuesItsPullSchedule(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	fresh := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)})
	f.install(t, fresh)
	srcDir := t.TempDir()
	testpki.WriteFile(t, srcDir, "node.crt", fresh.CertPEM(), 0o644)
	testpki.WriteFile(t, srcDir, "node.key", fresh.KeyPEM(t), 0o600)
	src := &fakeSource{dir: srcDir}
	o := agent.Options{
		SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src },
		Rand:      func() float64 { return 0 }, // the first run's first pull: at once
	}
	stop, _ := run(t, f, o)
	eventually(t, "the first pull", func() bool { return src.Calls() == 1 })
	stop()

	stop, log := run(t, f, o)
	eventually(t, "the restarted agent to be ready", func() bool { return strings.Contains(log.String(), "ready") })
	time.Sleep(500 * time.Millisecond)
	stop()
	if c := src.Calls(); c != 1 {
		t.Fatalf("the restarted agent pulled again at once (%d pulls); it should wait out the interval\n%s", c, log)
	}
}

// The inbox never goes back in time: a push of an older bundle (a CSR
// node's stale publish directory) is rejected, and the live bundle stays.
func TestInboxRefusesAnOlderCertificate(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	older := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(time.Hour)})
	newer := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour)})
	f.install(t, newer)
	stop, log := run(t, f, agent.Options{})
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	eventually(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
	testpki.WriteFile(t, inbox, "8eab.crt", older.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "8eab.key", older.KeyPEM(t), 0o600)
	eventually(t, "the older set to be rejected", func() bool {
		reasons, _ := filepath.Glob(filepath.Join(inbox, "rejected", "*", "reason"))
		return len(reasons) == 1
	})
	stop()
	reasons, _ := filepath.Glob(filepath.Join(inbox, "rejected", "*", "reason"))
	why, _ := os.ReadFile(reasons[0])
	if !strings.Contains(string(why), "older than the installed one") {
		t.Fatalf("reason: %s\n%s", why, log)
	}
	if b, _ := os.ReadFile(filepath.Join(f.live, "node.crt")); !bytes.Equal(b, newer.CertPEM()) || f.reloadCount() != 0 {
		t.Fatalf("the live bundle changed (reloads %d)", f.reloadCount())
	}
}
