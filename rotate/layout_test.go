package rotate_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

func manager(t *testing.T, preset, nodeID string, o rotate.Overrides) *rotate.Manager {
	t.Helper()
	if testLinkMode() == rotate.LinkSymlink {
		testenv.NeedSymlinks(t)
	}
	if o.Dir == nil {
		d := filepath.Join(t.TempDir(), "live")
		o.Dir = &d
	}
	l, err := rotate.ResolveLayout(preset, nodeID, o)
	if err != nil {
		t.Fatal(err)
	}
	return rotate.NewManager(rotate.Spec{Name: preset, Layout: l, NodeID: nodeID, Owner: platform.NoOwner, Link: testLinkMode()})
}

func ptr[T any](v T) *T { return &v }

// Every preset installs a bundle under its daemon's names and modes.
func TestPresetsInstallUnderCanonicalNames(t *testing.T) {
	testenv.NeedUnixPaths(t)
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	cases := []struct {
		preset string
		nodeID string
		leaf   *testpki.Pair
		want   map[string]fs.FileMode
		dir    string
	}{
		{"flocker-node", "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a", nil,
			map[string]fs.FileMode{"cluster.crt": 0o644, "node.crt": 0o644, "node.key": 0o600}, "/etc/flocker"},
		{"flocker-control", "control.example.com", nil,
			map[string]fs.FileMode{"cluster.crt": 0o644, "control-service.crt": 0o644, "control-service.key": 0o600}, "/etc/flocker"},
		{"mesos", "192.168.1.172", nil,
			map[string]fs.FileMode{"ca.pem": 0o644, "localhost.pem": 0o644, "localhost-key.pem": 0o600, "mesos-ssl.env": 0o644}, "/etc/mesos/pki"},
		{"glow", "localhost", nil,
			map[string]fs.FileMode{"ca.cer": 0o644, "localhost.cer": 0o644, "localhost.key": 0o600}, "/etc/glow/ssl"},
		{"reign", "32", nil,
			map[string]fs.FileMode{"signing.crt": 0o644, "node.32.crt": 0o644, "node.32.key": 0o600}, "/etc/reign"},
		{"reign-init", "7", nil,
			map[string]fs.FileMode{"reign_ca.crt": 0o644, "reign_node.7.crt": 0o644, "reign_node.7.key": 0o600}, "/etc/reign"},
		{"clusterio", "203.0.113.4", testpki.SelfSigned(t, "localhost", testpki.Options{IPs: []string{"203.0.113.4"}}),
			map[string]fs.FileMode{"cert.pem": 0o644, "key.pem": 0o600, ".certkeeper-ca.pem": 0o644}, "/etc/clusterio"},
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			defaults, err := rotate.ResolveLayout(c.preset, c.nodeID, rotate.Overrides{})
			if err != nil || defaults.Dir != c.dir {
				t.Fatalf("preset dir %q, %v; want %s", defaults.Dir, err, c.dir)
			}
			leaf := c.leaf
			inputs := []rotate.Input{}
			if leaf == nil {
				// As certkeeper's CA issues it now: the id as a SAN too.
				leaf = ca.Issue(t, c.nodeID, testpki.Options{IPs: ipIf(c.nodeID), DNS: dnsIf(c.nodeID)})
				inputs = append(inputs, in("whatever-ca-name.pem", ca.CertPEM()))
			}
			inputs = append(inputs, in("x.crt", leaf.CertPEM()), in("x.key", leaf.KeyPEM(t)))
			m := manager(t, c.preset, c.nodeID, rotate.Overrides{})
			res, err := m.Install(inputs, "test")
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed {
				t.Fatal("first install reported no change")
			}
			dir := m.Spec.Layout.Dir
			var got []string
			for name, want := range c.want {
				got = append(got, name)
				if m := mode(t, filepath.Join(dir, name)); m != want {
					t.Errorf("%s mode %04o, want %04o", name, m, want)
				}
			}
			entries, _ := os.ReadDir(dir)
			var visible []string
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), "..") {
					visible = append(visible, e.Name())
				}
			}
			slices.Sort(got)
			if !slices.Equal(visible, got) {
				t.Errorf("visible files %v, want %v", visible, got)
			}
			if st := m.Status(); st.Health != rotate.OK {
				t.Errorf("status %s: %s %v", st.Health, st.HealthText, st.Problems)
			}
		})
	}
}

func ipIf(id string) []string {
	if strings.Count(id, ".") == 3 && strings.Trim(id, "0123456789.") == "" {
		return []string{id}
	}
	return nil
}

func dnsIf(id string) []string {
	if ipIf(id) == nil {
		return []string{id}
	}
	return nil
}

// The Mesos preset writes the LIBPROCESS_SSL_* variables the Mesos guide
// exports by hand, pointing at the installed files.
func TestMesosEnvFile(t *testing.T) {
	testenv.NeedUnix(t, "sh, to read the env file as systemd's EnvironmentFile and the Mesos guide's `set -a; .` do")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "192.168.1.172", testpki.Options{IPs: []string{"192.168.1.172"}})
	dir := filepath.Join(t.TempDir(), "etc mesos", "pki")
	m := manager(t, "mesos", "192.168.1.172", rotate.Overrides{Dir: &dir, Env: map[string]string{"LIBPROCESS_SSL_REQUIRE_CERT": "false"}})
	if _, err := m.Install([]rotate.Input{in("ca.pem", ca.CertPEM()), in("localhost.pem", leaf.CertPEM()), in("localhost-key.pem", leaf.KeyPEM(t))}, "test"); err != nil {
		t.Fatal(err)
	}
	env := readVisible(t, dir, "mesos-ssl.env")
	for _, line := range []string{
		"LIBPROCESS_SSL_ENABLED=true",
		"LIBPROCESS_SSL_SUPPORT_DOWNGRADE=false",
		`LIBPROCESS_SSL_CERT_FILE="` + filepath.Join(dir, "localhost.pem") + `"`,
		`LIBPROCESS_SSL_KEY_FILE="` + filepath.Join(dir, "localhost-key.pem") + `"`,
		`LIBPROCESS_SSL_CA_FILE="` + filepath.Join(dir, "ca.pem") + `"`,
		`LIBPROCESS_SSL_CA_DIR="` + dir + `"`,
		"LIBPROCESS_SSL_VERIFY_CERT=true",
		"LIBPROCESS_SSL_REQUIRE_CERT=false",
	} {
		if !strings.Contains(env, line+"\n") {
			t.Errorf("env file lacks %s:\n%s", line, env)
		}
	}
	// The file is sourceable by a shell and yields the paths, spaces and all.
	out := testpki.Shell(t, "set -a; . '"+filepath.Join(dir, "mesos-ssl.env")+"'; printf %s \"$LIBPROCESS_SSL_KEY_FILE\"")
	if out != filepath.Join(dir, "localhost-key.pem") {
		t.Errorf("sourced LIBPROCESS_SSL_KEY_FILE = %q", out)
	}
}

// Clusterio's guide makes one self-signed certificate that is both the
// controller's certificate and the hosts' CA.
func TestClusterioSelfSigned(t *testing.T) {
	self := testpki.SelfSigned(t, "localhost", testpki.Options{CA: true, IPs: []string{"203.0.113.4"}, DNS: []string{"localhost"}})
	controller := manager(t, "clusterio", "203.0.113.4", rotate.Overrides{})
	if _, err := controller.Install([]rotate.Input{in("cert.pem", self.CertPEM()), in("key.pem", self.KeyPEM(t))}, "test"); err != nil {
		t.Fatalf("controller: %v", err)
	}
	host := manager(t, "clusterio-host", "host-1", rotate.Overrides{})
	if _, err := host.Install([]rotate.Input{in("cert.pem", self.CertPEM())}, "test"); err != nil {
		t.Fatalf("host: %v", err)
	}
	if got := readVisible(t, host.Spec.Layout.Dir, "cert.pem"); got != string(self.CertPEM()) {
		t.Error("host's cert.pem is not the controller's certificate")
	}
	// The controller's key never belongs on a host.
	_, err := manager(t, "clusterio-host", "host-1", rotate.Overrides{}).Install([]rotate.Input{in("cert.pem", self.CertPEM()), in("key.pem", self.KeyPEM(t))}, "test")
	if err == nil || !strings.Contains(err.Error(), "key.pem: this layout installs only the CA") {
		t.Errorf("host with the controller key: %v", err)
	}
	// Elsewhere a self-signed leaf is refused: it is a CA, not a node.
	_, err = manager(t, "glow", "203.0.113.4", rotate.Overrides{}).Install([]rotate.Input{in("cert.pem", self.CertPEM()), in("key.pem", self.KeyPEM(t))}, "test")
	if err == nil {
		t.Error("glow accepted a self-signed leaf")
	}
}

// A Clusterio controller whose certificate comes from a cluster CA writes
// no CA file for the daemon, yet certkeeper keeps the CA it trusts: status
// verifies the chain, and a bundle from another CA is a CA change.
func TestClusterioControllerKeepsItsTrustAnchor(t *testing.T) {
	ca, other := testpki.NewCA(t, "cluster", testpki.Options{}), testpki.NewCA(t, "other", testpki.Options{})
	leaf := ca.Issue(t, "203.0.113.4", testpki.Options{IPs: []string{"203.0.113.4"}})
	m := manager(t, "clusterio", "203.0.113.4", rotate.Overrides{})
	if _, err := m.Install([]rotate.Input{in("c.pem", leaf.CertPEM()), in("k.pem", leaf.KeyPEM(t)), in("ca.pem", ca.CertPEM())}, "test"); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Health != rotate.OK || st.Chain != "ok" {
		t.Fatalf("status %s %q, chain %q", st.Health, st.HealthText, st.Chain)
	}
	foreign := other.Issue(t, "203.0.113.4", testpki.Options{IPs: []string{"203.0.113.4"}})
	_, err := m.Install([]rotate.Input{in("c.pem", foreign.CertPEM()), in("k.pem", foreign.KeyPEM(t)), in("ca.pem", other.CertPEM())}, "test")
	if err == nil || !strings.Contains(err.Error(), "refusing a CA change") {
		t.Fatalf("a bundle from another CA: %v", err)
	}
}

// reign checks the CN only; a SAN naming the node is not enough there.
func TestReignRequiresCN(t *testing.T) {
	ca := testpki.NewCA(t, "signing", testpki.Options{})
	leaf := ca.Issue(t, "something-else", testpki.Options{DNS: []string{"7"}})
	_, err := manager(t, "reign", "7", rotate.Overrides{}).Install([]rotate.Input{in("a", ca.CertPEM()), in("b", leaf.CertPEM()), in("c", leaf.KeyPEM(t))}, "test")
	if err == nil || !strings.Contains(err.Error(), "the CN (the reign layout requires it)") {
		t.Fatalf("reign with the id only in a SAN: %v", err)
	}
}

func TestLayoutOverridesAndRefusals(t *testing.T) {
	testenv.NeedUnixPaths(t)
	l, err := rotate.ResolveLayout("flocker-node", "n1", rotate.Overrides{
		Dir: ptr("/srv/flocker"), KeyFile: ptr("n1.key"), KeyMode: ptr(fs.FileMode(0o400)), DirMode: ptr(fs.FileMode(0o750)), Owner: "flocker", Group: "flocker",
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.Dir != "/srv/flocker" || l.KeyFile != "n1.key" || l.CertFile != "node.crt" || l.KeyMode != 0o400 || l.DirMode != 0o750 || l.Owner != "flocker" {
		t.Errorf("overrides not applied: %+v", l)
	}
	for name, c := range map[string]struct {
		preset string
		o      rotate.Overrides
		want   string
	}{
		"unknown preset":       {"flocker", rotate.Overrides{}, `unknown layout "flocker"`},
		"custom without names": {"custom", rotate.Overrides{Dir: ptr("/x")}, "no files to install"},
		"custom without dir":   {"custom", rotate.Overrides{CertFile: ptr("a"), KeyFile: ptr("b"), CAFile: ptr("c")}, "dir is required"},
		"relative dir":         {"glow", rotate.Overrides{Dir: ptr("etc/glow")}, "absolute"},
		"key readable":         {"glow", rotate.Overrides{KeyMode: ptr(fs.FileMode(0o644))}, "lets other users read the private key"},
		"dir writable":         {"glow", rotate.Overrides{DirMode: ptr(fs.FileMode(0o777))}, "lets other users add files"},
		"path in a name":       {"glow", rotate.Overrides{KeyFile: ptr("../evil.key")}, "path separator"},
		"reserved name":        {"glow", rotate.Overrides{KeyFile: ptr("..data")}, "reserves"},
		"same name twice":      {"glow", rotate.Overrides{KeyFile: ptr("ca.cer")}, "used twice"},
		"cert without key":     {"glow", rotate.Overrides{KeyFile: ptr("")}, "go together"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := rotate.ResolveLayout(c.preset, "n1", c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ResolveLayout = %v, want %q", err, c.want)
			}
		})
	}
	custom, err := rotate.ResolveLayout("custom", "n1", rotate.Overrides{Dir: ptr("/etc/app/tls"), CAFile: ptr("ca.crt"), CertFile: ptr("tls.crt"), KeyFile: ptr("tls.key")})
	if err != nil || custom.Preset != "custom" {
		t.Fatalf("custom: %v", err)
	}
}

// Status sees what an admin would: drifted modes, edited content, missing
// names.
func TestStatusSeesDrift(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "n1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	m := manager(t, "flocker-node", "n1", rotate.Overrides{})
	if _, err := m.Install([]rotate.Input{in("a", ca.CertPEM()), in("b", leaf.CertPEM()), in("c", leaf.KeyPEM(t))}, "test"); err != nil {
		t.Fatal(err)
	}
	dir := m.Spec.Layout.Dir
	if st := m.Status(); st.Health != rotate.OK || !st.KeyMatch || st.Chain != "ok" || st.RenewAt.IsZero() {
		t.Fatalf("fresh install: %+v", st)
	}
	if platform.SupportsOwnership {
		os.Chmod(filepath.Join(dir, "node.key"), 0o644)
		st := m.Status()
		if st.Health != rotate.Critical || !strings.Contains(st.HealthText, "node.key: mode is 0644, want 0600") {
			t.Fatalf("after chmod: %s %s", st.Health, st.HealthText)
		}
		os.Chmod(filepath.Join(dir, "node.key"), 0o600)
	}
	os.Remove(filepath.Join(dir, "cluster.crt"))
	if st := m.Status(); st.Health != rotate.Critical || !strings.Contains(st.HealthText, "cluster.crt: missing") {
		t.Fatalf("after rm: %s %s", st.Health, st.HealthText)
	}
}

// A Clusterio controller's certificate is its own CA: replacing it is a CA
// change, refused with the CA-change reason, and allowed by
// allow_ca_change.
func TestClusterioControllerReplacesItsSelfSignedCertificate(t *testing.T) {
	opts := testpki.Options{CA: true, IPs: []string{"203.0.113.4"}, DNS: []string{"localhost"}}
	first, second := testpki.SelfSigned(t, "node1", opts), testpki.SelfSigned(t, "node1", opts)
	m := manager(t, "clusterio", "203.0.113.4", rotate.Overrides{})
	if _, err := m.Install([]rotate.Input{in("cert.pem", first.CertPEM()), in("key.pem", first.KeyPEM(t))}, "test"); err != nil {
		t.Fatal(err)
	}
	_, err := m.Install([]rotate.Input{in("cert.pem", second.CertPEM()), in("key.pem", second.KeyPEM(t))}, "test")
	if err == nil || !strings.Contains(err.Error(), "refusing a CA change") || strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("a new self-signed certificate without allow_ca_change: %v", err)
	}
	if got := readVisible(t, m.Spec.Layout.Dir, "cert.pem"); got != string(first.CertPEM()) {
		t.Fatal("the refused certificate is live")
	}
	m.Spec.AllowCAChange = true
	if _, err := m.Install([]rotate.Input{in("cert.pem", second.CertPEM()), in("key.pem", second.KeyPEM(t))}, "test"); err != nil {
		t.Fatalf("a new self-signed certificate with allow_ca_change: %v", err)
	}
	if got := readVisible(t, m.Spec.Layout.Dir, "cert.pem"); got != string(second.CertPEM()) {
		t.Fatal("the new certificate is not live")
	}
	if st := m.Status(); st.Health != rotate.OK || st.Chain != "ok" {
		t.Fatalf("status after the replacement: %s %q, chain %q", st.Health, st.HealthText, st.Chain)
	}
}

// A live directory that can not be trusted (chmod 777) is the one problem
// status reports: not every file as missing from the live generation, with
// the advice to install again, which would be refused.
func TestStatusOfAnUnreadableLiveDirectoryShowsOnlyTheCause(t *testing.T) {
	if !platform.SupportsOwnership {
		t.Skip("no Unix modes here")
	}
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "n1", testpki.Options{})
	m := manager(t, "flocker-node", "n1", rotate.Overrides{})
	if _, err := m.Install([]rotate.Input{in("a", ca.CertPEM()), in("b", leaf.CertPEM()), in("c", leaf.KeyPEM(t))}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.Spec.Layout.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st.Health != rotate.Critical || !strings.Contains(st.HealthText, "writable by group or others") {
		t.Fatalf("status: %s %q", st.Health, st.HealthText)
	}
	if len(st.Files) != 0 || len(st.Problems) != 1 {
		t.Fatalf("status lists %d files and problems %q; want only the directory's", len(st.Files), st.Problems)
	}
}

// Files an admin copied by hand before certkeeper's first install are the
// live bundle: the first install is adopted over them, so a bundle from
// another CA is a CA change like any other (invariant 5).
func TestHandCopiedFilesAreTheTrustAnchorOfTheFirstInstall(t *testing.T) {
	ca, other := testpki.NewCA(t, "cluster", testpki.Options{}), testpki.NewCA(t, "other", testpki.Options{})
	mine, foreign := ca.Issue(t, "n1", testpki.Options{}), other.Issue(t, "n1", testpki.Options{})
	handCopied := func(t *testing.T) *rotate.Manager {
		m := manager(t, "flocker-node", "n1", rotate.Overrides{})
		dir := m.Spec.Layout.Dir
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		testpki.WriteFile(t, dir, "cluster.crt", ca.CertPEM(), 0o644)
		testpki.WriteFile(t, dir, "node.crt", mine.CertPEM(), 0o644)
		testpki.WriteFile(t, dir, "node.key", mine.KeyPEM(t), 0o600)
		return m
	}
	foreignBundle := []rotate.Input{in("ca2.crt", other.CertPEM()), in("n2.crt", foreign.CertPEM()), in("n2.key", foreign.KeyPEM(t))}

	m := handCopied(t)
	_, err := m.Install(foreignBundle, "test")
	if err == nil || !strings.Contains(err.Error(), "refusing a CA change") {
		t.Fatalf("a bundle from another CA over hand-copied files: %v", err)
	}
	if got := readVisible(t, m.Spec.Layout.Dir, "node.crt"); got != string(mine.CertPEM()) {
		t.Fatal("the hand-copied certificate was replaced")
	}
	// A renewed leaf from the same CA takes the hand-copied key.
	renewed := ca.Issue(t, "n1", testpki.Options{Reuse: mine.Key})
	if _, err := m.Install([]rotate.Input{in("n1.crt", renewed.CertPEM())}, "test"); err != nil {
		t.Fatalf("a renewed leaf for the hand-copied key: %v", err)
	}

	m = handCopied(t)
	m.Spec.AllowCAChange = true
	if _, err := m.Install(foreignBundle, "test"); err != nil {
		t.Fatalf("with allow_ca_change: %v", err)
	}
}
