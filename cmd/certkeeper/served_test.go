//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// servedNode is a node whose bundle names its real mutual-TLS daemon's
// endpoint (served), with the agent running.
type servedNode struct {
	n             *node
	d             *daemontest.Daemon
	a             *agentProc
	ca            *testpki.Pair
	first, second *testpki.Pair
	inbox         string
	prom          string // the agent's metrics textfile
}

func startServed(t *testing.T, ignoreHUP bool, policy string) *servedNode {
	t.Helper()
	s := &servedNode{ca: testpki.NewCA(t, "cluster", testpki.Options{})}
	s.first = s.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	s.n = newNode(t, "flocker-node", "node-1", "")
	if r := s.n.install(s.n.files(map[string][]byte{"a": s.first.CertPEM(), "b": s.first.KeyPEM(t), "c": s.ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	s.d = daemontest.Start(t, daemontest.Options{Cert: filepath.Join(s.n.live, "node.crt"), Key: filepath.Join(s.n.live, "node.key"),
		CA: filepath.Join(s.n.live, "cluster.crt"), IgnoreHUP: ignoreHUP})
	mismatch := ""
	if policy != "" {
		mismatch = fmt.Sprintf("served_mismatch = %q\n", policy)
	}
	s.prom = filepath.Join(s.n.root, "metrics.prom")
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q
metrics_textfile = %q

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
served = %q
served_wait = "300ms"
%s
  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
`, filepath.Join(s.n.root, "state"), s.prom, s.n.live, s.d.Addr, mismatch, s.d.Pidfile)
	testpki.WriteFile(t, s.n.root, "certkeeper.toml", []byte(cfg), 0o600)
	s.a = startAgent(t, s.n.config)
	t.Cleanup(func() { s.a.stop(t) })
	s.inbox = filepath.Join(s.n.root, "state", "inbox", "b")
	waitFor(t, "the first served check", func() bool {
		return strings.Contains(certkeeper(t, "status", "--config", s.n.config).stdout, "matches the live certificate")
	})
	s.second = s.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	for name, data := range map[string][]byte{"n.crt": s.second.CertPEM(), "n.key": s.second.KeyPEM(t)} {
		os.WriteFile(filepath.Join(s.inbox, name), data, 0o600)
	}
	return s
}

// servedMetric is the certkeeper_served_matches_live line of the
// agent's metrics textfile, "" before it has one.
func (s *servedNode) servedMetric() string {
	m, _ := os.ReadFile(s.prom)
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, `certkeeper_served_matches_live{bundle="b"} `) {
			return line
		}
	}
	return ""
}

func (s *servedNode) hups() int {
	return strings.Count(s.d.Log(), "SIGHUP ignored") + strings.Count(s.d.Log(), "reloaded: serving")
}

// A daemon that takes its reload: the served check passes after exactly
// one reload, and status shows the served serial.
func TestServedCheckPassesWithOneReload(t *testing.T) {
	s := startServed(t, false, "")
	want := fmt.Sprintf("%x", s.second.Cert.SerialNumber)
	waitFor(t, "the served check", func() bool { return strings.Contains(s.a.log(), "daemon serves the live certificate") })
	if !strings.Contains(s.d.Log(), "reloaded: serving serial="+want) {
		t.Fatalf("daemon did not reload:\n%s", s.d.Log())
	}
	if n := s.hups(); n != 1 {
		t.Fatalf("%d reloads, want exactly 1:\n%s", n, s.d.Log())
	}
	r := certkeeper(t, "status", "--config", s.n.config)
	if !strings.Contains(r.stdout, "matches the live certificate") || !strings.Contains(r.stdout, s.d.Addr+" serves serial ") {
		t.Fatalf("status:\n%s", r.stdout)
	}
	if r := certkeeper(t, "check", "--config", s.n.config); r.code != 0 {
		t.Fatalf("check: %+v", r)
	}
	waitFor(t, "certkeeper_served_matches_live 1", func() bool { return strings.HasSuffix(s.servedMetric(), " 1") })
}

// A daemon that ignores SIGHUP, served_mismatch = "report": the agent
// reloads twice more, then reports; the new bundle stays live, check is
// CRITICAL, status shows the mismatch.
func TestServedCheckReportsADaemonThatIgnoresItsReload(t *testing.T) {
	s := startServed(t, true, "report")
	waitFor(t, "the report", func() bool { return strings.Contains(s.a.log(), "reported, the live bundle stays") })
	if n := s.hups(); n != 3 {
		t.Fatalf("%d SIGHUPs, want 3 (the reload and two more):\n%s", n, s.d.Log())
	}
	r := certkeeper(t, "check", "--config", s.n.config)
	if r.code != 2 || !strings.Contains(r.stdout, "serves serial") {
		t.Fatalf("check after a mismatch: %+v", r)
	}
	r = certkeeper(t, "status", "--config", s.n.config)
	if !strings.Contains(r.stdout, "MISMATCH") || !strings.Contains(r.stdout, "reported after 2 more reloads") {
		t.Fatalf("status:\n%s", r.stdout)
	}
	live, err := os.ReadFile(filepath.Join(s.n.live, "node.crt"))
	if err != nil || !strings.Contains(string(live), strings.TrimSpace(string(s.second.CertPEM()))) {
		t.Fatalf("the new certificate should stay live (report), err %v", err)
	}
	waitFor(t, "certkeeper_served_matches_live 0", func() bool { return strings.HasSuffix(s.servedMetric(), " 0") })
}

// The same daemon with served_mismatch = "rollback": after the extra
// reloads the bundle rolls back to the certificate the daemon still
// serves, and the served check matches again.
func TestServedCheckRollsBackADaemonThatIgnoresItsReload(t *testing.T) {
	s := startServed(t, true, "rollback")
	waitFor(t, "the rollback", func() bool { return strings.Contains(s.a.log(), "rolled back") })
	live, err := os.ReadFile(filepath.Join(s.n.live, "node.crt"))
	if err != nil || !strings.Contains(string(live), strings.TrimSpace(string(s.first.CertPEM()))) {
		t.Fatalf("the first certificate should be live again, err %v", err)
	}
	waitFor(t, "status to show the rollback", func() bool {
		out := certkeeper(t, "status", "--config", s.n.config).stdout
		return strings.Contains(out, "matches the live certificate") && strings.Contains(out, "last rollback") && strings.Contains(out, "rolled back after 2 more reloads")
	})
	r := certkeeper(t, "check", "--config", s.n.config)
	if r.code != 1 || !strings.Contains(r.stdout, "served check") {
		t.Fatalf("check after a served rollback: %+v", r)
	}
	// The daemon serves the live (rolled-back) leaf again.
	waitFor(t, "certkeeper_served_matches_live 1 after the rollback", func() bool { return strings.HasSuffix(s.servedMetric(), " 1") })
}

// A reload that failed (the pid file names nothing: the daemon was not
// started by its usual unit) is fixed by hand, as troubleshooting.md says:
// the admin reloads the daemon. Once the served check sees the daemon
// serve the live certificate, check is OK again; it no longer says
// "reload failed" until the next change or a restart of the agent.
func TestServedCheckClearsAReloadFixedByHand(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	first := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	n := newNode(t, "flocker-node", "node-1", "")
	if r := n.install(n.files(map[string][]byte{"a": first.CertPEM(), "b": first.KeyPEM(t), "c": ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(n.live, "node.crt"), Key: filepath.Join(n.live, "node.key"), CA: filepath.Join(n.live, "cluster.crt")})
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q
rescan_interval = "1s"

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
served = %q
served_wait = "200ms"

  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
`, filepath.Join(n.root, "state"), n.live, d.Addr, d.Pidfile+".wrong")
	testpki.WriteFile(t, n.root, "certkeeper.toml", []byte(cfg), 0o600)
	a := startAgent(t, n.config)
	t.Cleanup(func() { a.stop(t) })
	waitFor(t, "the first served check", func() bool {
		return strings.Contains(certkeeper(t, "status", "--config", n.config).stdout, "matches the live certificate")
	})
	second := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	inbox := filepath.Join(n.root, "state", "inbox", "b")
	for name, data := range map[string][]byte{"n.crt": second.CertPEM(), "n.key": second.KeyPEM(t)} {
		os.WriteFile(filepath.Join(inbox, name), data, 0o600)
	}
	waitFor(t, "the failed reload", func() bool {
		return strings.Contains(a.log(), "reload failed") && strings.Contains(a.log(), "reported, the live bundle stays")
	})
	if r := certkeeper(t, "check", "--config", n.config); r.code == 0 {
		t.Fatalf("check after a failed reload: %+v", r)
	}
	pid, err := os.ReadFile(d.Pidfile)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(string(pid), &p)
	syscall.Kill(p, syscall.SIGHUP) // the admin's reload by hand
	waitFor(t, "check OK once the daemon serves the live certificate", func() bool {
		return certkeeper(t, "check", "--config", n.config).code == 0
	})
}

// certkeeper install on a bundle with served says when the daemon serves
// the new certificate, as the agent's log does.
func TestInstallSaysTheDaemonServesTheNewCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	first := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	n := newNode(t, "flocker-node", "node-1", "")
	if r := n.install(n.files(map[string][]byte{"a": first.CertPEM(), "b": first.KeyPEM(t), "c": ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(n.live, "node.crt"), Key: filepath.Join(n.live, "node.key"), CA: filepath.Join(n.live, "cluster.crt")})
	cfg := fmt.Sprintf("node_id = \"node-1\"\nstate_dir = %q\n\n[[bundle]]\nname = \"b\"\nlayout = \"flocker-node\"\ndir = %q\nserved = %q\n\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n",
		filepath.Join(n.root, "state"), n.live, d.Addr, d.Pidfile)
	testpki.WriteFile(t, n.root, "certkeeper.toml", []byte(cfg), 0o600)
	second := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	r := n.install(n.files(map[string][]byte{"a": second.CertPEM(), "b": second.KeyPEM(t)})...)
	if r.code != 0 || !strings.Contains(r.stdout, d.Addr+" serves serial ") || !strings.Contains(r.stdout, "the new certificate") {
		t.Fatalf("%+v", r)
	}
}
