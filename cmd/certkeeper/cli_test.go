package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

var binary string

// TestMain builds the real binary once; the tests run it as an admin would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certkeeper-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "certkeeper")
	if b := os.Getenv("CERTKEEPER_TEST_BINARY"); b != "" {
		binary = b // built beforehand (scripts/wine/gotest: no Go under Wine)
	} else if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func certkeeper(t *testing.T, args ...string) result {
	t.Helper()
	return certkeeperIn(t, nil, args...)
}

// certkeeperIn runs the binary with stdin (a CSR for ca sign, a typed
// "yes" for trust).
func certkeeperIn(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	return runBinary(t, stdin, nil, args...)
}

// runBinary runs the binary once to its exit, with stdin and extra
// environment variables, and returns its exit code and output.
//
// Under Wine, CreateProcess now and then fails before the child exists
// ("fork/exec ...certkeeper.exe: Internal error.", seen once in a CI run
// with five test binaries sharing one wineserver). Such a start failure
// is retried, at most three times; anything the child itself did, an
// exit code included, is never retried.
func runBinary(t *testing.T, stdin []byte, env []string, args ...string) result {
	t.Helper()
	const attempts = 3
	for i := 1; ; i++ {
		cmd := exec.Command(binary, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		if env != nil {
			cmd.Env = append(os.Environ(), env...)
		}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return result{ee.ExitCode(), o.String(), e.String()}
		}
		if err == nil {
			return result{0, o.String(), e.String()}
		}
		if cmd.Process != nil || runtime.GOOS != "windows" || i == attempts {
			t.Fatal(err)
		}
		t.Logf("start %d of %d failed, retrying: %v", i, attempts, err)
		time.Sleep(time.Duration(i) * 100 * time.Millisecond)
	}
}

// node is a temporary node: a config with one bundle and a place for files.
type node struct {
	t      *testing.T
	root   string
	config string
	live   string
}

func newNode(t *testing.T, layout, nodeID, extra string) *node {
	t.Helper()
	root := t.TempDir()
	n := &node{t: t, root: root, config: filepath.Join(root, "certkeeper.toml"), live: filepath.Join(root, "live")}
	cfg := fmt.Sprintf("node_id = %q\nstate_dir = %q\n\n[[bundle]]\nname = \"b\"\nlayout = %q\ndir = %q\n%s", nodeID, filepath.Join(root, "state"), layout, n.live, extra)
	testpki.WriteFile(t, root, "certkeeper.toml", []byte(cfg), 0o600)
	return n
}

// files writes named files into a fresh input directory and returns paths.
func (n *node) files(named map[string][]byte) []string {
	dir, err := os.MkdirTemp(n.root, "in-")
	if err != nil {
		n.t.Fatal(err)
	}
	var paths []string
	for name, data := range named {
		paths = append(paths, testpki.WriteFile(n.t, dir, name, data, 0o600))
	}
	return paths
}

func (n *node) install(paths ...string) result {
	return certkeeper(n.t, append([]string{"install", "--config", n.config}, paths...)...)
}

// Each bad bundle: install exits 1, says why, and the live directory is
// byte for byte what it was.
func TestInstallOfABadBundleChangesNothing(t *testing.T) {
	now := time.Now()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	other := testpki.NewCA(t, "other", testpki.Options{})
	good := ca.Issue(t, "node-1", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "")
	if r := n.install(n.files(map[string][]byte{"8eab.crt": good.CertPEM(), "8eab.key": good.KeyPEM(t), "cluster.crt": ca.CertPEM()})...); r.code != 0 {
		t.Fatalf("good install: %+v", r)
	}
	before := testfs.Snapshot(t, n.live)

	pair := func(p *testpki.Pair, caPEM []byte) map[string][]byte {
		return map[string][]byte{"node.crt": p.CertPEM(), "node.key": p.KeyPEM(t), "cluster.crt": caPEM}
	}
	encDir := t.TempDir()
	testpki.OpenSSL(t, encDir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:x", "-out", "enc.key")
	enc, _ := os.ReadFile(filepath.Join(encDir, "enc.key"))
	cases := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"another node's certificate", pair(ca.Issue(t, "node-2", testpki.Options{}), ca.CertPEM()), `node.crt: certificate is for "node-2", this node is "node-1"`},
		{"another cluster's CA", pair(other.Issue(t, "node-1", testpki.Options{}), other.CertPEM()), "cluster.crt: cluster CA"},
		{"expired", pair(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}), ca.CertPEM()), "node.crt: certificate expired"},
		{"mismatched key", map[string][]byte{"node.crt": good.CertPEM(), "node.key": testpki.KeyPEM(t, testpki.NewKey(t, "")), "cluster.crt": ca.CertPEM()}, "node.key: private key does not match"},
		{"encrypted key", map[string][]byte{"node.crt": good.CertPEM(), "node.key": enc, "cluster.crt": ca.CertPEM()}, "node.key: private key is encrypted"},
		{"empty file", map[string][]byte{"node.crt": good.CertPEM(), "node.key": nil, "cluster.crt": ca.CertPEM()}, "node.key: file is empty"},
		{"weak RSA key", pair(ca.Issue(t, "node-1", testpki.Options{Key: testpki.RSA1024}), ca.CertPEM()), "RSA key of 1024 bits"},
		{"a CA as leaf", pair(ca.Issue(t, "node-1", testpki.Options{CA: true}), ca.CertPEM()), "is a CA certificate"},
		{"garbage", map[string][]byte{"node.crt": []byte("hello"), "cluster.crt": ca.CertPEM()}, "node.crt: unsupported content"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := n.install(n.files(c.files)...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr does not say %q:\n%s", c.want, r.stderr)
			}
			if after := testfs.Snapshot(t, n.live); after != before {
				t.Fatalf("live directory changed:\n%s\n---\n%s", before, after)
			}
		})
	}
	t.Run("symlink as input", func(t *testing.T) {
		paths := n.files(pair(good, ca.CertPEM()))
		link := filepath.Join(filepath.Dir(paths[0]), "link.crt")
		os.Symlink(paths[0], link)
		r := n.install(link, paths[1], paths[2])
		if r.code != 1 || !strings.Contains(r.stderr, "is a symlink") {
			t.Fatalf("symlink input: %+v", r)
		}
		if testfs.Snapshot(t, n.live) != before {
			t.Fatal("live directory changed")
		}
	})
	t.Run("file over 1 MiB", func(t *testing.T) {
		r := n.install(n.files(map[string][]byte{"node.crt": bytes.Repeat([]byte("A"), 1<<20+1), "node.key": good.KeyPEM(t)})...)
		if r.code != 1 || !strings.Contains(r.stderr, "1 MiB") {
			t.Fatalf("huge input: %+v", r)
		}
	})
}

// Reloads run once per change and never without one.
func TestInstallReloadsOnlyOnChange(t *testing.T) {
	testenv.NeedUnix(t, "/bin/sh, which its reload commands run")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	log := filepath.Join(t.TempDir(), "reloads")
	n := newNode(t, "glow", "localhost", fmt.Sprintf("  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", \"echo reload >> %s\"]\n", log))
	a, b := ca.Issue(t, "localhost", testpki.Options{}), ca.Issue(t, "localhost", testpki.Options{})
	files := func(p *testpki.Pair) []string {
		return n.files(map[string][]byte{"localhost.cer": p.CertPEM(), "localhost.key": p.KeyPEM(t), "ca.cer": ca.CertPEM()})
	}
	reloads := func() int {
		data, _ := os.ReadFile(log)
		return strings.Count(string(data), "reload")
	}
	for i, step := range []struct {
		p    *testpki.Pair
		want int
		out  string
	}{{a, 1, "installed generation ..gen-000001"}, {a, 1, "unchanged"}, {b, 2, "installed generation ..gen-000002"}, {b, 2, "unchanged"}} {
		r := n.install(files(step.p)...)
		if r.code != 0 || !strings.Contains(r.stdout, step.out) {
			t.Fatalf("step %d: %+v", i, r)
		}
		if got := reloads(); got != step.want {
			t.Fatalf("step %d: %d reloads, want %d", i, got, step.want)
		}
	}
	// Rollback goes back to a, and reloads once.
	r := certkeeper(t, "rollback", "--config", n.config, "--bundle", "b")
	if r.code != 0 || !strings.Contains(r.stdout, "rolled back from ..gen-000002 to ..gen-000001") || reloads() != 3 {
		t.Fatalf("rollback: %+v, %d reloads", r, reloads())
	}
	live, _ := os.ReadFile(filepath.Join(n.live, "localhost.cer"))
	if !bytes.Equal(live, a.CertPEM()) {
		t.Fatal("rollback did not restore the first certificate")
	}
}

func TestInstallReportsAFailedReload(t *testing.T) {
	testenv.NeedUnix(t, "/bin/sh, which its reload commands run")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	p := ca.Issue(t, "localhost", testpki.Options{})
	n := newNode(t, "glow", "localhost", "  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", \"echo daemon not found >&2; exit 3\"]\n")
	r := n.install(n.files(map[string][]byte{"a": p.CertPEM(), "b": p.KeyPEM(t), "c": ca.CertPEM()})...)
	if r.code != 1 || !strings.Contains(r.stderr, "exit status 3") || !strings.Contains(r.stderr, "daemon not found") || !strings.Contains(r.stdout, "installed generation") {
		t.Fatalf("failed reload: %+v", r)
	}
}

// The Glow wiki's and reign's openssl recipes produce bundles that install
// under their layouts, and the installed files pass `openssl verify`.
func TestOpenSSLRecipesInstall(t *testing.T) {
	t.Run("glow", func(t *testing.T) {
		dir := t.TempDir()
		testpki.GlowRecipe(t, dir, "localhost")
		n := newNode(t, "glow", "localhost", "")
		r := n.install(filepath.Join(dir, "server1.cer"), filepath.Join(dir, "server1.key"), filepath.Join(dir, "ca.cer"))
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		testpki.OpenSSL(t, n.live, "verify", "-CAfile", "ca.cer", "localhost.cer")
	})
	t.Run("reign", func(t *testing.T) {
		dir := t.TempDir()
		testpki.ReignRecipe(t, dir, "1")
		n := newNode(t, "reign", "1", "")
		r := n.install(filepath.Join(dir, "signing.crt"), filepath.Join(dir, "node.1.crt"), filepath.Join(dir, "node.1.key"))
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		testpki.OpenSSL(t, n.live, "verify", "-CAfile", "signing.crt", "node.1.crt")
		if _, err := os.Stat(filepath.Join(n.live, "node.1.key")); err != nil {
			t.Fatal(err)
		}
	})
}

// `certkeeper verify` and `openssl verify` agree on whether a leaf chains
// to the CA. (certkeeper is deliberately stricter elsewhere: names, key
// sizes, SHA-1 and MD5; those cases are tested on their own.)
func TestVerifyAgreesWithOpenSSL(t *testing.T) {
	testenv.NeedUnix(t, "openssl")
	now := time.Now()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	other := testpki.NewCA(t, "other", testpki.Options{})
	inter := ca.Issue(t, "intermediate", testpki.Options{CA: true})
	cases := []struct {
		name   string
		leaf   *testpki.Pair
		chain  []byte
		caPEM  []byte
		expect bool
	}{
		{"direct", ca.Issue(t, "n1", testpki.Options{}), nil, ca.CertPEM(), true},
		{"through an intermediate", inter.Issue(t, "n1", testpki.Options{}), inter.CertPEM(), ca.CertPEM(), true},
		{"intermediate missing", inter.Issue(t, "n1", testpki.Options{}), nil, ca.CertPEM(), false},
		{"other CA", other.Issue(t, "n1", testpki.Options{}), nil, ca.CertPEM(), false},
		{"expired", ca.Issue(t, "n1", testpki.Options{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}), nil, ca.CertPEM(), false},
		{"not yet valid", ca.Issue(t, "n1", testpki.Options{NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}), nil, ca.CertPEM(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			testpki.WriteFile(t, dir, "ca.crt", c.caPEM, 0o644)
			testpki.WriteFile(t, dir, "leaf.crt", append(c.leaf.CertPEM(), c.chain...), 0o644)
			testpki.WriteFile(t, dir, "leaf.key", c.leaf.KeyPEM(t), 0o600)
			args := []string{"verify", "-CAfile", "ca.crt"}
			if c.chain != nil {
				testpki.WriteFile(t, dir, "chain.crt", c.chain, 0o644)
				args = append(args, "-untrusted", "chain.crt")
			}
			_, opensslErr := testpki.OpenSSLErr(dir, append(args, "leaf.crt")...)
			r := certkeeper(t, "verify", "--ca", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "leaf.crt"), filepath.Join(dir, "leaf.key"))
			if (opensslErr == nil) != c.expect || (r.code == 0) != c.expect {
				t.Fatalf("openssl ok=%v, certkeeper exit %d (%s), want ok=%v", opensslErr == nil, r.code, strings.TrimSpace(r.stdout), c.expect)
			}
		})
	}
}

// Clusterio's self-signed controller certificate is its own CA: verify
// says where the CA came from, not "--ca" it was never given.
func TestVerifySelfSignedClusterio(t *testing.T) {
	self := testpki.SelfSigned(t, "node1", testpki.Options{DNS: []string{"node1"}})
	dir := t.TempDir()
	cert := testpki.WriteFile(t, dir, "cert.pem", self.CertPEM(), 0o644)
	key := testpki.WriteFile(t, dir, "key.pem", self.KeyPEM(t), 0o600)
	r := certkeeper(t, "verify", "--layout", "clusterio", "--node-id", "node1", cert, key)
	if r.code != 0 || !strings.Contains(r.stdout, "cert.pem (self-signed: its own CA)") || strings.Contains(r.stdout, "--ca") {
		t.Fatalf("%+v", r)
	}
}

func TestStatusAndCheck(t *testing.T) {
	testenv.NeedUnix(t, "mode bits, which status shows and a chmod drifts")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	now := time.Now()
	n := newNode(t, "flocker-node", "node-1", "")

	check := func() result { return certkeeper(t, "check", "--config", n.config) }
	if r := check(); r.code != 2 || !strings.HasPrefix(r.stdout, "CERTKEEPER CRITICAL - bundle b: nothing installed") {
		t.Fatalf("check before install: %+v", r)
	}
	fresh := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(90 * 24 * time.Hour), DNS: []string{"node-1", "node-1.example"}})
	if r := n.install(n.files(map[string][]byte{"a": fresh.CertPEM(), "b": fresh.KeyPEM(t), "c": ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	if r := check(); r.code != 0 || !strings.HasPrefix(r.stdout, "CERTKEEPER OK - bundle b: expires in 89d") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Fatalf("check fresh: %+v", r)
	}
	r := certkeeper(t, "status", "--config", n.config)
	for _, want := range []string{"bundle b (flocker-node)", "CN=node-1", "DNS:node-1.example", "issuer", "matches the certificate", "node.key     key   0600", "next renewal"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = certkeeper(t, "status", "--config", n.config, "--json")
	var sts []rotate.Status
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts) != 1 || sts[0].Leaf == nil || !sts[0].KeyMatch {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}

	// In the renewal window: WARNING.
	aging := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	if r := n.install(n.files(map[string][]byte{"a": aging.CertPEM(), "b": aging.KeyPEM(t)})...); r.code != 0 {
		t.Fatal(r)
	}
	if r := check(); r.code != 1 || !strings.HasPrefix(r.stdout, "CERTKEEPER WARNING - bundle b: in its renewal window") {
		t.Fatalf("check aging: %+v", r)
	}
	// Drift is CRITICAL.
	os.Chmod(filepath.Join(n.live, "node.key"), 0o644)
	if r := check(); r.code != 2 || !strings.Contains(r.stdout, "node.key: mode is 0644") {
		t.Fatalf("check drift: %+v", r)
	}
	// A broken config is UNKNOWN.
	testpki.WriteFile(t, n.root, "certkeeper.toml", []byte("node_id = 1\n"), 0o600)
	if r := check(); r.code != 3 || !strings.HasPrefix(r.stdout, "CERTKEEPER UNKNOWN - ") {
		t.Fatalf("check bad config: %+v", r)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"install"}, {"install", "--config"}, {"verify"}, {"rollback", "--config", "x", "extra"}, {"status", "--nope"}} {
		if r := certkeeper(t, args...); r.code != 2 {
			t.Errorf("certkeeper %v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	for _, cmd := range []string{"install", "verify", "status", "check", "rollback", "version"} {
		r := certkeeper(t, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: certkeeper "+cmd) {
			t.Errorf("%s --help: %+v", cmd, r)
		}
	}
	if r := certkeeper(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "certkeeper ") {
		t.Errorf("version: %+v", r)
	}
}

// "Install the bundle again" (docs/troubleshooting.md) restores damaged or
// loosened live files, says what it repaired, and reloads nothing: the
// daemon is given exactly what it had.
func TestInstallAgainRepairsTheLiveFiles(t *testing.T) {
	testenv.NeedUnix(t, "/bin/sh, which its reload commands run")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	log := filepath.Join(t.TempDir(), "reloads")
	n := newNode(t, "glow", "localhost", fmt.Sprintf("  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", \"echo reload >> %s\"]\n", log))
	p := ca.Issue(t, "localhost", testpki.Options{})
	files := n.files(map[string][]byte{"localhost.cer": p.CertPEM(), "localhost.key": p.KeyPEM(t), "ca.cer": ca.CertPEM()})
	if r := n.install(files...); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	os.WriteFile(filepath.Join(n.live, "localhost.cer"), []byte("garbage\n"), 0o644)
	os.Chmod(filepath.Join(n.live, "localhost.key"), 0o644)
	r := n.install(files...)
	if r.code != 0 || !strings.Contains(r.stdout, "unchanged") || !strings.Contains(r.stdout, "repaired") ||
		!strings.Contains(r.stdout, "localhost.cer") || !strings.Contains(r.stdout, "localhost.key") {
		t.Fatalf("install again: %+v", r)
	}
	if live, _ := os.ReadFile(filepath.Join(n.live, "localhost.cer")); !bytes.Equal(live, p.CertPEM()) {
		t.Fatalf("live certificate after install again: %q", live)
	}
	if fi, err := os.Stat(filepath.Join(n.live, "localhost.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("live key after install again: %v %v", fi.Mode(), err)
	}
	if data, _ := os.ReadFile(log); strings.Count(string(data), "reload") != 1 {
		t.Fatalf("reloads: %q, want only the first install's", data)
	}
}

// A rollback whose certificate can not be put on the refused list (the
// state directory is broken) says so and exits 1, rather than claiming the
// agent will not pull it again.
func TestRollbackSaysWhenTheRefusedListFails(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	n := newNode(t, "glow", "localhost", "")
	for _, p := range []*testpki.Pair{ca.Issue(t, "localhost", testpki.Options{}), ca.Issue(t, "localhost", testpki.Options{})} {
		if r := n.install(n.files(map[string][]byte{"a": p.CertPEM(), "b": p.KeyPEM(t), "c": ca.CertPEM()})...); r.code != 0 {
			t.Fatal(r)
		}
	}
	testpki.WriteFile(t, n.root, "state", []byte("not a directory"), 0o600)
	r := certkeeper(t, "rollback", "--config", n.config, "--bundle", "b")
	if r.code != 1 || !strings.Contains(r.stdout, "rolled back from ..gen-000002 to ..gen-000001") ||
		strings.Contains(r.stdout, "is refused from the admin host") || !strings.Contains(r.stderr, "could not record the certificate rolled away from as refused") {
		t.Fatalf("%+v", r)
	}
}

// A bundle without its key is told to include the key under the layout's
// name (mesos: localhost-key.pem), as the missing CA is (ca.pem), not
// under Flocker's node.key.
func TestVerifyNamesTheLayoutsKeyFile(t *testing.T) {
	ca := testpki.NewCA(t, "c", testpki.Options{})
	dir := t.TempDir()
	cert := testpki.WriteFile(t, dir, "localhost.pem", ca.Issue(t, "node1", testpki.Options{DNS: []string{"node1"}}).CertPEM(), 0o644)
	code, stdout, stderr := runIn("verify", "--layout", "mesos", "--node-id", "node1", cert)
	if code != 1 || !strings.Contains(stdout+stderr, "include the private key (localhost-key.pem)") || strings.Contains(stdout+stderr, "node.key") {
		t.Errorf("exit %d:\n%s%s", code, stdout, stderr)
	}
}
