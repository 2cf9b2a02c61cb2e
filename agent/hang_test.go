//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/rotate"
)

// silentHost accepts TCP connections on loopback and never says a word: an
// admin host whose sshd hangs.
type silentHost struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startSilentHost(t *testing.T) *silentHost {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &silentHost{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-h.done
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
	})
	return h
}

func (h *silentHost) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// within polls a condition for at most d: tighter than eventually, for
// what must happen promptly.
func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < d; time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s did not happen within %s", what, d)
}

// An admin host that accepts the connection and never answers holds up
// nothing but its own fetch: the agent is ready at once, repairs a key
// chmod-ed to 0644 and installs a set dropped into the inbox while the
// fetch hangs, and stops promptly.
func TestAHungAdminHostBlocksNeitherRepairsNorTheInbox(t *testing.T) {
	f := newFixture(t)
	host := startSilentHost(t)
	id := testsshd.NewKey(t, f.root, "id_ed25519", "ed25519")
	hostKey := testsshd.NewKey(t, f.root, "host_key", "ed25519")
	testpki.WriteFile(t, f.root, "known_hosts", []byte(knownhosts.Line([]string{knownhosts.Normalize(host.ln.Addr().String())}, hostKey.Public)+"\n"), 0o644)
	cfg, _ := os.ReadFile(f.config)
	cfg = bytes.Replace(cfg, []byte("address = \"admin.invalid:22\""), []byte(fmt.Sprintf("address = %q\nidentity_file = %q\ntimeout = \"20s\"", host.ln.Addr().String(), id.Path)), 1)
	cfg = bytes.Replace(cfg, []byte("known_hosts = \"/dev/null\""), []byte(fmt.Sprintf("known_hosts = %q", filepath.Join(f.root, "known_hosts"))), 1)
	testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	now := time.Now()
	// In its renewal window: the agent fetches at once.
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}))

	start := time.Now()
	stop, log := run(t, f, agent.Options{SourceFor: agent.ConfiguredSource})
	within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
	within(t, 5*time.Second, "a connection to the silent host", func() bool { return host.accepted() > 0 || strings.Contains(log.String(), "fetch from") })
	if host.accepted() == 0 {
		t.Fatalf("the agent did not connect to the silent host\n%s", log)
	}
	t.Logf("ready after %s", time.Since(start).Round(time.Millisecond))

	key := filepath.Join(f.live, "node.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "the key's mode to be repaired", func() bool {
		fi, err := os.Stat(key)
		return err == nil && fi.Mode().Perm() == 0o600
	})

	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)})
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	testpki.WriteFile(t, inbox, "8eab.crt", renewed.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "8eab.key", renewed.KeyPEM(t), 0o600)
	within(t, 5*time.Second, "the inbox set to be installed", func() bool {
		b, _ := os.ReadFile(filepath.Join(f.live, "node.crt"))
		return bytes.Equal(b, renewed.CertPEM())
	})
	if strings.Contains(log.String(), "fetch from the source failed") {
		t.Fatalf("the fetch ended already; the test did not hold it up\n%s", log)
	}
	stopped := time.Now()
	stop()
	if d := time.Since(stopped); d > 5*time.Second {
		t.Fatalf("stopping took %s with a fetch in flight", d)
	}
	if c := f.reloadCount(); c != 1 {
		t.Fatalf("%d reloads, want 1\n%s", c, log)
	}
}

// slowFailingSource fails after a while, and says when it returned.
type slowFailingSource struct {
	delay    time.Duration
	mu       sync.Mutex
	returned []time.Time
}

func (s *slowFailingSource) Fetch(ctx context.Context, _ *agent.Bundle) ([]rotate.Input, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.returned = append(s.returned, time.Now())
	return nil, errors.New("admin host unreachable (slow fake)")
}

func (s *slowFailingSource) calls() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.returned...)
}

// The backoff after a failure counts from when the attempt ended: a fetch
// that takes longer than its backoff does not retry back to back.
func TestBackoffCountsFromTheEndOfTheAttempt(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}))
	src := &slowFailingSource{delay: 400 * time.Millisecond}
	stop, log := run(t, f, agent.Options{
		SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src },
		Rand:      func() float64 { return 0 },
	})
	eventually(t, "a failed fetch", func() bool { return strings.Contains(log.String(), "fetch from the source failed") })
	stop()
	returned := src.calls()
	if len(returned) != 1 {
		t.Fatalf("%d calls, want 1", len(returned))
	}
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	s := st.Bundles[0].Source
	if s == nil || s.LastAttempt.Before(returned[0]) {
		t.Fatalf("the attempt is recorded at %v, before the fetch returned at %v: its backoff counts from the start", s.LastAttempt, returned[0])
	}
	if d, want := s.NextTry.Sub(s.LastAttempt), agent.Backoff(1, 0, 10*24*time.Hour, 90*24*time.Hour); d != want {
		t.Fatalf("next try %s after the attempt, want %s", d, want)
	}
}

// A live directory and an inbox written with a trailing slash are watched
// like any other: a deleted node.crt is restored and a dropped set
// installed at once, not at the next rescan a minute later.
func TestATrailingSlashInDirAndInboxKeepsTheWatch(t *testing.T) {
	f := newFixture(t)
	inbox := filepath.Join(f.root, "in")
	cfg, _ := os.ReadFile(f.config)
	cfg = bytes.Replace(cfg, []byte(fmt.Sprintf("dir = %q", f.live)), []byte(fmt.Sprintf("dir = %q\ninbox = %q", f.live+"/", inbox+"/")), 1)
	testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	now := time.Now()
	leaf := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)})
	f.install(t, leaf)
	_, log := run(t, f, agent.Options{})
	within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })

	crt := filepath.Join(f.live, "node.crt")
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "node.crt to be restored", func() bool {
		b, _ := os.ReadFile(crt)
		return bytes.Equal(b, leaf.CertPEM())
	})
	// Let the repair's own events pass: the drop below must be seen by
	// the inbox's watch, not by a step the repair caused.
	time.Sleep(300 * time.Millisecond)
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(91 * 24 * time.Hour)})
	testpki.WriteFile(t, inbox, "8eab.crt", renewed.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "8eab.key", renewed.KeyPEM(t), 0o600)
	within(t, 5*time.Second, "the inbox set to be installed", func() bool {
		b, _ := os.ReadFile(crt)
		return bytes.Equal(b, renewed.CertPEM())
	})
}

// Files copied with scp -p from an admin host whose clock is an hour ahead
// carry modification times in the future; they are installed at once, not
// in an hour.
func TestInboxFilesFromTheFutureAreTakenAtOnce(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)}))
	_, log := run(t, f, agent.Options{})
	within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(91 * 24 * time.Hour)})
	ahead := now.Add(time.Hour)
	for name, data := range map[string][]byte{"8eab.crt": renewed.CertPEM(), "8eab.key": renewed.KeyPEM(t)} {
		tmp := filepath.Join(inbox, "."+name)
		testpki.WriteFile(t, inbox, "."+name, data, 0o600)
		if err := os.Chtimes(tmp, ahead, ahead); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 5*time.Second, "the inbox set to be installed", func() bool {
		b, _ := os.ReadFile(filepath.Join(f.live, "node.crt"))
		return bytes.Equal(b, renewed.CertPEM())
	})
}

// Nothing installed is CRITICAL in the agent's health and its metric, as
// in check; a live directory that disappears is logged as an error, once.
func TestNothingInstalledIsCritical(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte("state_dir"), []byte("rescan_interval = \"1s\"\nstate_dir"), 1), 0o600)
	stop, log := run(t, f, agent.Options{})
	state := func() agent.BundleState {
		st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
		if st == nil || len(st.Bundles) == 0 {
			return agent.BundleState{}
		}
		return st.Bundles[0]
	}
	eventually(t, "the state of a bundle with nothing installed", func() bool { return state().NotInstalled != "" })
	b := state()
	if h, text := b.Health(); h != rotate.Critical || text != "nothing installed in "+f.live {
		t.Fatalf("health %s %q, want CRITICAL nothing installed", h, text)
	}
	var buf bytes.Buffer
	agent.WriteMetrics(&buf, time.Now(), []agent.BundleState{b}, time.Now())
	if want := `certkeeper_bundle_health{bundle="b"} 2`; !strings.Contains(buf.String(), want) {
		t.Fatalf("metrics lack %q:\n%s", want, buf.String())
	}

	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	eventually(t, "the installed bundle to be seen", func() bool { s := state(); return s.NotInstalled == "" && s.Generation != "" })
	if h, text := state().Health(); h != rotate.OK {
		t.Fatalf("health %s %q after the install", h, text)
	}
	const gone = "the live bundle is gone"
	if err := os.RemoveAll(f.live); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the error", func() bool { return strings.Contains(log.String(), gone) })
	time.Sleep(1500 * time.Millisecond) // rescans every second
	stop()
	if n := strings.Count(log.String(), gone); n != 1 || !strings.Contains(log.String(), "level=ERROR msg=\""+gone) {
		t.Fatalf("logged %d times, want one error\n%s", n, log)
	}
	if h, _ := state().Health(); h != rotate.Critical {
		t.Fatalf("health %s after the live directory went", h)
	}
}

// The package's starter config (node_id still the placeholder): nothing
// installed is not CRITICAL in the agent's health or its metric, as check
// says OK: nothing is configured yet.
func TestStarterConfigIsNotCritical(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	cfg = bytes.Replace(cfg, []byte(`node_id = "node-1"`), []byte(`node_id = "`+agent.StarterNodeID+`"`), 1)
	prom := filepath.Join(f.root, "metrics.prom")
	cfg = bytes.Replace(cfg, []byte("state_dir"), []byte(fmt.Sprintf("rescan_interval = \"1s\"\nmetrics_textfile = %q\nstate_dir", prom)), 1)
	testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	stop, _ := run(t, f, agent.Options{})
	defer stop()
	eventually(t, "the metrics textfile", func() bool { _, err := os.Stat(prom); return err == nil })
	c, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	// Over a few rescans, the health stays OK.
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		m, _ := os.ReadFile(prom)
		if want := `certkeeper_bundle_health{bundle="b"} 0`; !strings.Contains(string(m), want) {
			t.Fatalf("metrics lack %q:\n%s", want, m)
		}
		if r := agent.Reports(c)[0]; r.Health != rotate.OK {
			t.Fatalf("the starter config's report: %s %q", r.Health, r.HealthText)
		}
	}
}

// The agent's health of a bundle with nothing live.
func TestHealthOfNothingInstalled(t *testing.T) {
	if h, text := (agent.BundleState{NotInstalled: "nothing installed in /etc/flocker"}).Health(); h != rotate.Critical || text != "nothing installed in /etc/flocker" {
		t.Fatalf("health %s %q", h, text)
	}
	if h, _ := (agent.BundleState{}).Health(); h != rotate.OK {
		t.Fatalf("health %s of a bundle with a live certificate", h)
	}
}

// A set that cannot be moved to rejected/ (a file, not a directory, named
// rejected sits in the inbox) is rejected and counted once, not at every
// rescan; the stray file is never taken for part of a set.
func TestAnUnmovableRejectedSetIsRejectedOnce(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte("state_dir"), []byte("rescan_interval = \"1s\"\nstate_dir"), 1), 0o600)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	if err := os.MkdirAll(inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, inbox, "rejected", []byte("not a directory\n"), 0o600)
	stop, log := run(t, f, agent.Options{})
	within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
	other := f.ca.Issue(t, "node-2", testpki.Options{})
	testpki.WriteFile(t, inbox, "x.crt", other.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "x.key", other.KeyPEM(t), 0o600)
	testpki.WriteFile(t, inbox, "ca.crt", f.ca.CertPEM(), 0o644)
	const rejected = "inbox set rejected"
	within(t, 5*time.Second, "the rejection", func() bool { return strings.Contains(log.String(), rejected) })
	time.Sleep(2500 * time.Millisecond) // rescans every second
	stop()
	if n := strings.Count(log.String(), rejected); n != 1 {
		t.Fatalf("rejected %d times, want once\n%s", n, log)
	}
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if b := st.Bundles[0]; b.Counters.Rejected != 1 || b.LastInstall == nil || strings.Contains(b.LastInstall.Detail, "rejected is") {
		t.Fatalf("state: %+v %+v", b.Counters, b.LastInstall)
	}
	if _, err := os.Stat(filepath.Join(inbox, "x.crt")); err != nil {
		t.Fatalf("the unmovable set should stay in the inbox: %v", err)
	}
}

// A set in which nothing is a certificate or a key is rejected at once,
// not after inbox_timeout.
func TestASetWithNothingThatParsesIsRejectedAtOnce(t *testing.T) {
	f := newFixture(t)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	_, log := run(t, f, agent.Options{})
	within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	testpki.WriteFile(t, inbox, "README", []byte("copy node.crt and node.key here\n"), 0o644)
	within(t, 5*time.Second, "the rejection", func() bool {
		reasons, _ := filepath.Glob(filepath.Join(inbox, "rejected", "*", "reason"))
		return len(reasons) == 1
	})
}

// With nothing installed, the agent reports ready once its first fetch
// has ended, so `systemctl start` returns with the bundle in place; but an
// admin host that hangs holds the report back only so long (ReadyWait),
// and the inbox is served meanwhile.
func TestReadyWaitsForTheFirstFetchOnlySoLong(t *testing.T) {
	t.Run("the fetch ends", func(t *testing.T) {
		f := newFixture(t)
		src := &slowFailingSource{delay: 500 * time.Millisecond}
		stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src }})
		defer stop()
		within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
		l := log.String()
		if f, r := strings.Index(l, "fetch from the source failed"), strings.Index(l, "ready"); f < 0 || r < f {
			t.Fatalf("ready came before the first fetch ended:\n%s", l)
		}
	})
	t.Run("the fetch hangs", func(t *testing.T) {
		f := newFixture(t)
		src := &slowFailingSource{delay: time.Minute}
		start := time.Now()
		stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return src }, ReadyWait: time.Second})
		defer stop()
		p := f.ca.Issue(t, "node-1", testpki.Options{})
		inbox := filepath.Join(f.root, "state", "inbox", "b")
		within(t, 5*time.Second, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
		testpki.WriteFile(t, inbox, "a.crt", p.CertPEM(), 0o644)
		testpki.WriteFile(t, inbox, "a.key", p.KeyPEM(t), 0o600)
		testpki.WriteFile(t, inbox, "ca.crt", f.ca.CertPEM(), 0o644)
		within(t, 5*time.Second, "ready", func() bool { return strings.Contains(log.String(), "ready") })
		if d := time.Since(start); d < time.Second {
			t.Fatalf("ready after %s, before ReadyWait, with the fetch still running", d)
		}
		if !strings.Contains(log.String(), "reporting ready without it") {
			t.Fatalf("no word of the fetch still running:\n%s", log)
		}
		within(t, 5*time.Second, "the inbox set to be installed", func() bool {
			b, _ := os.ReadFile(filepath.Join(f.live, "node.crt"))
			return bytes.Equal(b, p.CertPEM())
		})
	})
}
