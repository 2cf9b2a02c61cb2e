package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// pullSetup is an admin host (a real sshd) publishing node-1's bundle in
// the CA's layout, and a node config that pulls it.
type pullSetup struct {
	sshd   *testsshd.Server
	ca     *testpki.Pair
	remote string // the bundle's directory on the admin host
	cfg    *agent.Config
	live   string
	reload string // a file the reload command appends to
}

func newPullSetup(t *testing.T) *pullSetup {
	t.Helper()
	return newPullSetupWith(t, "")
}

// newPullSetupWith adds bundle keys (a check, say) to the node's config.
func newPullSetupWith(t *testing.T, bundleKeys string) *pullSetup {
	t.Helper()
	s := &pullSetup{sshd: testsshd.Start(t, testsshd.Options{}), ca: testpki.NewCA(t, "cluster", testpki.Options{})}
	s.remote = filepath.Join(s.sshd.Dir, "ca", "nodes", "node-1")
	if err := os.MkdirAll(s.remote, 0o755); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	s.live = filepath.Join(root, "live")
	s.reload = filepath.Join(root, "reloads")
	conf := fmt.Sprintf(`node_id   = "node-1"
state_dir = %q

[source]
address       = %q
user          = %q
identity_file = %q
known_hosts   = %q
timeout       = "20s"

[[bundle]]
name       = "flocker"
layout     = "flocker-node"
dir        = %q
remote_dir = %q
%s
  [[bundle.reload]]
  command = ["/bin/sh", "-c", "echo reloaded >> %s"]
`, filepath.Join(root, "state"), s.sshd.Addr, s.sshd.User, s.sshd.Client.Path, s.sshd.KnownHosts, s.live, s.remote, bundleKeys, s.reload)
	testpki.WriteFile(t, root, "certkeeper.toml", []byte(conf), 0o600) // for agent.Run
	cfg, err := agent.ParseConfig(filepath.Join(root, "certkeeper.toml"), []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	return s
}

// publish writes a bundle for node-1 the way `certkeeper ca issue` does.
func (s *pullSetup) publish(t *testing.T, o testpki.Options) *testpki.Pair {
	t.Helper()
	leaf := s.ca.Issue(t, "node-1", o)
	testpki.WriteFile(t, s.remote, "node.crt", leaf.CertPEM(), 0o644)
	testpki.WriteFile(t, s.remote, "node.key", leaf.KeyPEM(t), 0o600)
	testpki.WriteFile(t, s.remote, "cluster.crt", s.ca.CertPEM(), 0o644)
	return leaf
}

func (s *pullSetup) source(t *testing.T) *agent.SFTPSource {
	t.Helper()
	src, err := agent.NewSFTPSource(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func (s *pullSetup) liveSerial(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.live, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.Parse(data)
	if err != nil || len(p.Certificates) == 0 {
		t.Fatalf("live node.crt: %v", err)
	}
	return pki.Serial(p.Certificates[0])
}

func (s *pullSetup) reloads(t *testing.T) int {
	data, _ := os.ReadFile(s.reload)
	return strings.Count(string(data), "reloaded")
}

func TestPullInstallsAFreshBundleOnceAndReloadsOnce(t *testing.T) {
	s := newPullSetup(t)
	leaf := s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	src := s.source(t)
	out, err := src.Pull(context.Background(), b, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Result.Changed || s.liveSerial(t) != pki.Serial(leaf.Cert) || s.reloads(t) != 1 {
		t.Fatalf("want installed and reloaded once: %+v, reloads %d", out.Result, s.reloads(t))
	}
	fi, err := os.Stat(filepath.Join(s.live, "node.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.key: %v %v", fi, err)
	}
	// The same content again: no new generation, no reload.
	out, err = src.Pull(context.Background(), b, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if out.Result.Changed || s.reloads(t) != 1 {
		t.Fatalf("identical content must be a no-op: %+v, reloads %d", out.Result, s.reloads(t))
	}
}

// A pull whose check fails after the install rolls back, as the agent
// does: the previous generation is live again, the daemons are reloaded
// twice (the new bundle, then the old one), the error says so, and the
// next pull refuses the certificate the check failed on.
func TestPullRollsBackWhenTheCheckFails(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken")
	s := newPullSetupWith(t, fmt.Sprintf("check = [\"/bin/sh\", \"-c\", \"test ! -e %s\"]\n", broken))
	first := s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	src := s.source(t)
	out, err := src.Pull(context.Background(), b, quiet)
	if err != nil || out.Check == nil || out.Check.Err != nil || s.reloads(t) != 1 {
		t.Fatalf("first pull: %v, check %+v, reloads %d", err, out.Check, s.reloads(t))
	}
	s.publish(t, testpki.Options{NotBefore: time.Now().Add(-time.Minute)})
	testpki.WriteFile(t, filepath.Dir(broken), "broken", nil, 0o600)
	out, err = src.Pull(context.Background(), b, quiet)
	if err == nil || !strings.Contains(err.Error(), "check failed after installing") || !strings.Contains(err.Error(), "rolled back to") {
		t.Fatalf("pull with a failing check: %v", err)
	}
	if !out.RolledBack || s.liveSerial(t) != pki.Serial(first.Cert) || s.reloads(t) != 3 {
		t.Fatalf("want rolled back to %s with 3 reloads: rolled back %v, live %s, reloads %d", pki.Serial(first.Cert), out.RolledBack, s.liveSerial(t), s.reloads(t))
	}
	if _, err := src.Pull(context.Background(), b, quiet); err == nil || !strings.Contains(err.Error(), "refused here") {
		t.Fatalf("the next pull: %v, want the certificate refused", err)
	}
	if s.liveSerial(t) != pki.Serial(first.Cert) || s.reloads(t) != 3 {
		t.Fatal("the refused certificate changed the live bundle")
	}
}

// certkeeper install checks and rolls back the same way.
func TestInstallRollsBackWhenTheCheckFails(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken")
	s := newPullSetupWith(t, fmt.Sprintf("check = [\"/bin/sh\", \"-c\", \"test ! -e %s\"]\n", broken))
	b := &s.cfg.Bundles[0]
	in := func(p *testpki.Pair) []rotate.Input {
		return []rotate.Input{{Name: "a.crt", Data: p.CertPEM()}, {Name: "a.key", Data: p.KeyPEM(t)}, {Name: "ca.crt", Data: s.ca.CertPEM()}}
	}
	first := s.ca.Issue(t, "node-1", testpki.Options{})
	if _, err := agent.Install(context.Background(), b, in(first), "test", quiet); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, filepath.Dir(broken), "broken", nil, 0o600)
	out, err := agent.Install(context.Background(), b, in(s.ca.Issue(t, "node-1", testpki.Options{})), "test", quiet)
	if err == nil || !strings.Contains(err.Error(), "rolled back to") || !out.RolledBack {
		t.Fatalf("install with a failing check: %v (rolled back %v)", err, out.RolledBack)
	}
	if s.liveSerial(t) != pki.Serial(first.Cert) || s.reloads(t) != 3 {
		t.Fatalf("live %s, reloads %d; want %s and 3", s.liveSerial(t), s.reloads(t), pki.Serial(first.Cert))
	}
}

// A stale admin host (an older leaf than the live one) never takes the
// node back in time.
func TestPullRefusesAnOlderLeaf(t *testing.T) {
	s := newPullSetup(t)
	newer := s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	if _, err := s.source(t).Pull(context.Background(), b, quiet); err != nil {
		t.Fatal(err)
	}
	s.publish(t, testpki.Options{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(30 * time.Minute)})
	if _, err := s.source(t).Pull(context.Background(), b, quiet); err == nil {
		t.Fatal("an older leaf was installed")
	}
	if s.liveSerial(t) != pki.Serial(newer.Cert) {
		t.Fatal("the live bundle changed")
	}
}

// sshd dies (SIGKILL, sessions included) after the first file of a pull
// was read: the pull fails, the live bundle is exactly as it was, and the
// next pull, once sshd is back, installs the new bundle.
func TestSSHDKilledMidTransferLeavesTheLiveBundleAndTheNextPullWorks(t *testing.T) {
	s := newPullSetup(t)
	first := s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	if _, err := s.source(t).Pull(context.Background(), b, quiet); err != nil {
		t.Fatal(err)
	}
	before := testfs.Snapshot(t, s.live)
	second := s.publish(t, testpki.Options{})

	src := s.source(t)
	read := 0
	src.OnFile = func(_ *agent.Bundle, name string) {
		read++
		if read == 1 {
			s.sshd.Kill()
		}
	}
	_, err := src.Pull(context.Background(), b, quiet)
	if err == nil {
		t.Fatal("a pull cut short succeeded")
	}
	if !strings.Contains(err.Error(), s.sshd.Addr) {
		t.Errorf("the error should name the host: %v", err)
	}
	t.Logf("cut short: %v", err)
	if read != 1 {
		t.Fatalf("read %d files after the kill", read)
	}
	if after := testfs.Snapshot(t, s.live); after != before || s.liveSerial(t) != pki.Serial(first.Cert) || s.reloads(t) != 1 {
		t.Fatalf("the live bundle changed:\n%s\nvs\n%s", before, after)
	}

	s.sshd.Restart()
	if _, err := s.source(t).Pull(context.Background(), b, quiet); err != nil {
		t.Fatal(err)
	}
	if s.liveSerial(t) != pki.Serial(second.Cert) || s.reloads(t) != 2 {
		t.Fatal("the next pull did not install the new bundle")
	}
}

func TestPullRefusesASymlinkOrADeviceInTheRemoteDirectory(t *testing.T) {
	s := newPullSetup(t)
	s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	os.Remove(filepath.Join(s.remote, "cluster.crt"))
	if err := os.Symlink("/etc/passwd", filepath.Join(s.remote, "cluster.crt")); err != nil {
		t.Fatal(err)
	}
	_, err := s.source(t).Fetch(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), "cluster.crt is a symlink") {
		t.Fatalf("want the symlink refused by name, got %v", err)
	}
	os.Remove(filepath.Join(s.remote, "cluster.crt"))
	os.Mkdir(filepath.Join(s.remote, "sub"), 0o755)
	_, err = s.source(t).Fetch(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), "sub is not a regular file (a directory)") {
		t.Fatalf("want the directory refused by name, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.live, "node.crt")); err == nil {
		t.Fatal("something was installed")
	}
}

// A remote_dir that climbs is refused before any connection: by the
// config loader, and by the SFTP source itself for any other caller.
func TestPullRefusesARemoteDirThatClimbs(t *testing.T) {
	s := newPullSetup(t)
	b := s.cfg.Bundles[0]
	b.RemoteDir = "nodes/node-1/../node-2"
	s.sshd.Stop()
	_, err := s.source(t).Fetch(context.Background(), &b)
	if err == nil || !strings.Contains(err.Error(), `contains ".."`) {
		t.Fatalf("want refused, got %v", err)
	}
}

func TestDefaultRemoteDir(t *testing.T) {
	b := &agent.Bundle{NodeID: "8eab"}
	if got := agent.RemoteDir(b); got != "nodes/8eab" {
		t.Fatal(got)
	}
}

// A CSR bundle with nothing installed pulls its first bundle through the
// node's own account when [source] csr_user names the CA account.
func TestCSRSourcePullsTheFirstBundle(t *testing.T) {
	s := newPullSetup(t)
	leaf := s.publish(t, testpki.Options{})
	b := &s.cfg.Bundles[0]
	src := &agent.CSRSource{StateDir: s.cfg.StateDir, Pull: s.source(t),
		Exchange: func(context.Context, distribute.Target, []byte) ([]byte, error) {
			t.Error("a request went out with nothing installed")
			return nil, nil
		}}
	in, err := src.Fetch(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.InstallPulled(context.Background(), b, in, "pull", quiet); err != nil {
		t.Fatal(err)
	}
	if got := s.liveSerial(t); got != pki.Serial(leaf.Cert) {
		t.Fatalf("live serial %s, want %s", got, pki.Serial(leaf.Cert))
	}
}
