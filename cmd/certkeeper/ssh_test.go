package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// certkeeperIn runs the binary with stdin.
func TestTrustPinsOnlyWhenConfirmed(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	fp := ssh.FingerprintSHA256(s.HostKeys[0].Public)

	r := certkeeperIn(t, []byte("y\n"), "trust", s.Addr, "--known-hosts", kh)
	if r.code != 1 || !strings.Contains(r.stdout, fp) || !strings.Contains(r.stdout, `Type "yes"`) {
		t.Fatalf("anything but yes must not pin: %+v", r)
	}
	if _, err := os.Stat(kh); err == nil {
		t.Fatal("known_hosts written without confirmation")
	}
	r = certkeeperIn(t, []byte("yes\n"), "trust", s.Addr, "--known-hosts", kh)
	if r.code != 0 || !strings.Contains(r.stdout, "pinned "+s.Addr) {
		t.Fatalf("yes must pin: %+v", r)
	}
	// An answer piped in is not echoed: the prompt's line still ends.
	if !strings.Contains(r.stdout, "Type \"yes\" to pin: \npinned ") {
		t.Errorf("the prompt and the result share a line:\n%s", r.stdout)
	}
	data, _ := os.ReadFile(kh)
	if want := fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKeys[0].AuthorizedLine()); string(data) != want {
		t.Fatalf("known_hosts:\n%s\nwant\n%s", data, want)
	}
	// ssh itself accepts the pin.
	out, err := exec.Command("ssh-keygen", "-F", fmt.Sprintf("[127.0.0.1]:%d", s.Port), "-f", kh).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -F: %v %s", err, out)
	}
	r = certkeeperIn(t, []byte(""), "trust", s.Addr, "--known-hosts", kh)
	if r.code != 0 || !strings.Contains(r.stdout, "already pinned") {
		t.Fatalf("a second trust is a no-op: %+v", r)
	}
}

func TestTrustRefusesToReplaceADifferentPin(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	other := testsshd.NewKey(t, t.TempDir(), "other", "ed25519")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	old := fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, other.AuthorizedLine())
	os.WriteFile(kh, []byte(old), 0o644)
	r := certkeeperIn(t, []byte("yes\n"), "trust", s.Addr, "--known-hosts", kh, "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "HOST KEY CHANGED") ||
		!strings.Contains(r.stderr, ssh.FingerprintSHA256(other.Public)) || !strings.Contains(r.stderr, ssh.FingerprintSHA256(s.HostKeys[0].Public)) {
		t.Fatalf("want a loud refusal with both fingerprints: %+v", r)
	}
	if data, _ := os.ReadFile(kh); string(data) != old {
		t.Fatalf("known_hosts changed: %s", data)
	}
}

func TestTrustWithYesAndUsage(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if r := certkeeperIn(t, []byte(""), "trust", s.Addr, "--known-hosts", kh, "--yes"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if r := certkeeperIn(t, []byte(""), "trust", s.Addr); r.code != 2 || !strings.Contains(r.stderr, "--known-hosts") {
		t.Fatalf("%+v", r)
	}
	if r := certkeeperIn(t, []byte(""), "trust", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Fatalf("%+v", r)
	}
}

// pullNode is a node config pulling from a real sshd.
func pullNode(t *testing.T, s *testsshd.Server, knownHosts string) (config, remote, live string, ca *testpki.Pair) {
	t.Helper()
	ca = testpki.NewCA(t, "cluster", testpki.Options{})
	remote = filepath.Join(s.Dir, "ca", "nodes", "node-1")
	os.MkdirAll(remote, 0o755)
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	testpki.WriteFile(t, remote, "node.crt", leaf.CertPEM(), 0o644)
	testpki.WriteFile(t, remote, "node.key", leaf.KeyPEM(t), 0o600)
	testpki.WriteFile(t, remote, "cluster.crt", ca.CertPEM(), 0o644)
	root := t.TempDir()
	live = filepath.Join(root, "live")
	conf := fmt.Sprintf(`node_id = "node-1"
state_dir = %q
[source]
address = %q
user = %q
identity_file = %q
known_hosts = %q
timeout = "20s"
[[bundle]]
name = "flocker"
layout = "flocker-node"
dir = %q
remote_dir = %q
`, filepath.Join(root, "state"), s.Addr, s.User, s.Client.Path, knownHosts, live, remote)
	config = testpki.WriteFile(t, root, "certkeeper.toml", []byte(conf), 0o600)
	return
}

func TestPullCommand(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	config, _, live, _ := pullNode(t, s, s.KnownHosts)
	r := certkeeper(t, "pull", "--config", config, "--verbose")
	if r.code != 0 || !strings.Contains(r.stdout, "flocker: read node.key") || !strings.Contains(r.stdout, "installed generation") {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(filepath.Join(live, "node.key")); err != nil {
		t.Fatal(err)
	}
	r = certkeeper(t, "pull", "--config", config, "--bundle", "flocker")
	if r.code != 0 || !strings.Contains(r.stdout, "unchanged") {
		t.Fatalf("%+v", r)
	}
}

func TestPullCommandRefusesAChangedHostKey(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	other := testsshd.NewKey(t, t.TempDir(), "other", "ed25519")
	kh := testpki.WriteFile(t, t.TempDir(), "known_hosts", []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, other.AuthorizedLine())), 0o644)
	config, _, live, _ := pullNode(t, s, kh)
	r := certkeeper(t, "pull", "--config", config)
	if r.code != 1 || !strings.Contains(r.stderr, "HOST KEY CHANGED for "+s.Addr) ||
		!strings.Contains(r.stderr, ssh.FingerprintSHA256(other.Public)) || !strings.Contains(r.stderr, ssh.FingerprintSHA256(s.HostKeys[0].Public)) {
		t.Fatalf("want a refusal with both fingerprints: %+v", r)
	}
	if _, err := os.Stat(live); err == nil {
		t.Fatal("something was installed")
	}
}

func TestPullCommandWithoutSource(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "")
	r := certkeeper(t, "pull", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stderr, "no [source]") {
		t.Fatalf("%+v", r)
	}
}

func TestPushCommandPrintsATableAndFailsWhenANodeFails(t *testing.T) {
	client := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	a := testsshd.Start(t, testsshd.Options{Client: client})
	b := testsshd.Start(t, testsshd.Options{Client: client})
	os.Mkdir(filepath.Join(a.Dir, "inbox"), 0o700)
	kh := testpki.WriteFile(t, t.TempDir(), "known_hosts", []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n[127.0.0.1]:%d %s\n",
		a.Port, a.HostKeys[0].AuthorizedLine(), b.Port, b.HostKeys[0].AuthorizedLine())), 0o644)
	caDir := t.TempDir()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	for _, id := range []string{"n-a", "n-b"} {
		d := filepath.Join(caDir, "nodes", id)
		os.MkdirAll(d, 0o700)
		leaf := ca.Issue(t, id, testpki.Options{})
		testpki.WriteFile(t, d, "node.crt", leaf.CertPEM(), 0o644)
		testpki.WriteFile(t, d, "node.key", leaf.KeyPEM(t), 0o600)
		testpki.WriteFile(t, d, "cluster.crt", ca.CertPEM(), 0o644)
	}
	inv := testpki.WriteFile(t, t.TempDir(), "nodes.toml", []byte(fmt.Sprintf(`[defaults]
user = %q
identity_file = %q
known_hosts = %q

[[node]]
id = "n-a"
address = %q
target = %q

[[node]]
id = "n-b"
address = %q
target = %q
`, a.User, client.Path, kh, a.Addr, filepath.Join(a.Dir, "inbox"), b.Addr, filepath.Join(b.Dir, "missing"))), 0o600)

	r := certkeeper(t, "push", "--inventory", inv, "--ca-dir", caDir, "--concurrency", "2")
	if r.code != 1 {
		t.Fatalf("one node failed: want exit 1, got %+v", r)
	}
	// What worked on stdout; what failed, and the summary, on stderr.
	for _, want := range []string{"] n-a: ok (", "NODE", "RESULT", "n-a  ", "wrote cluster.crt, node.crt, node.key into"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, want := range []string{"] n-b: FAILED: ", "NODE", "n-b  ", "does not exist on the node", "2 node(s) pushed in", "1 ok, 1 failed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "FAILED") {
		t.Errorf("a failure on stdout:\n%s", r.stdout)
	}
	// --json: one report, the same judgement.
	r = certkeeper(t, "push", "--inventory", inv, "--ca-dir", caDir, "--json")
	var rep pushJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 || rep.OK != 1 || rep.Failed != 1 || len(rep.Nodes) != 2 {
		t.Errorf("push --json: %v %+v", err, r)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "inbox", "node.key")); err != nil {
		t.Error(err)
	}
	r = certkeeper(t, "push", "--inventory", inv, "--ca-dir", caDir, "--only", "n-a")
	if r.code != 0 || strings.Contains(r.stdout, "n-b") {
		t.Fatalf("--only: %+v", r)
	}
	if r := certkeeper(t, "push", "--inventory", inv, "--ca-dir", caDir, "--only", "n-z"); r.code != 2 {
		t.Fatalf("--only unknown: %+v", r)
	}
	if r := certkeeper(t, "push", "--ca-dir", caDir); r.code != 2 {
		t.Fatalf("usage: %+v", r)
	}
	// Without --ca-dir, push reads $CERTKEEPER_CA_DIR (else
	// /var/lib/certkeeper/ca) and says where it looked.
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CA_DIR=/nonexistent-ca"}, "push", "--inventory", inv); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "/nonexistent-ca/nodes/n-a") {
		t.Fatalf("push with the default CA dir: %+v", r)
	}
}

func TestSSHDConfigCommandPrintsMatchBlocksAndKeys(t *testing.T) {
	testenv.NeedUnix(t, "sshd")
	key := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	inv := testpki.WriteFile(t, t.TempDir(), "nodes.toml", []byte(fmt.Sprintf(`[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"
[[node]]
id = "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a"
address = "10.0.0.5"
account = "node-8eab"
public_key = %q
`, key.AuthorizedLine())), 0o600)
	r := certkeeper(t, "sshd-config", "--inventory", inv)
	for _, want := range []string{"Match User node-8eab\n", "ChrootDirectory /srv/certkeeper/8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a\n", "ForceCommand internal-sftp -R -d /\n", "AuthorizedKeysFile /etc/ssh/certkeeper/authorized_keys/%u\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("lacks %q: %+v", want, r)
		}
	}
	// sshd itself accepts the fragment.
	if _, err := os.Stat(testsshd.SSHD); err == nil {
		dir := t.TempDir()
		hk := testsshd.NewKey(t, dir, "hk", "ed25519")
		frag := testpki.WriteFile(t, dir, "certkeeper.conf", []byte(r.stdout), 0o644)
		cfg := testpki.WriteFile(t, dir, "sshd_config", []byte("Include "+frag+"\nHostKey "+hk.Path+"\nUsePAM no\nSubsystem sftp internal-sftp\n"), 0o644)
		if out, err := exec.Command(testsshd.SSHD, "-t", "-f", cfg).CombinedOutput(); err != nil {
			t.Errorf("sshd -t: %v %s", err, out)
		}
	}
	r = certkeeper(t, "sshd-config", "--inventory", inv, "--authorized-keys")
	if want := "# /etc/ssh/certkeeper/authorized_keys/node-8eab (root:root 0644)\nrestrict " + key.AuthorizedLine() + " certkeeper-node:8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a\n"; r.code != 0 || r.stdout != want {
		t.Errorf("authorized keys:\n%s\nwant\n%s", r.stdout, want)
	}
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CA_DIR=/nonexistent-ca"}, "sshd-config", "--inventory", inv, "--sync"); r.code == 0 {
		t.Errorf("--sync with a CA dir that does not exist: %+v", r)
	}
}

// An inventory id `ca sign` would refuse is refused when the inventory
// loads, so sshd-config never prints a forced command that can not work.
func TestSSHDConfigRefusesAnIDTheCARefuses(t *testing.T) {
	testenv.NeedUnix(t, "sshd")
	key := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	inv := testpki.WriteFile(t, t.TempDir(), "nodes.toml", []byte(fmt.Sprintf(`[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"

[[node]]
id = "n@x"
address = "10.0.0.5"
mode = "csr"
public_key = %q
`, key.AuthorizedLine())), 0o600)
	r := certkeeper(t, "sshd-config", "--inventory", inv, "--authorized-keys", "--ca-dir", "/var/lib/certkeeper/ca")
	if r.code == 0 || strings.Contains(r.stdout, "ca sign") || !strings.Contains(r.stderr, inv+`:6: node "n@x".id: id "n@x": '@' is not allowed`) ||
		!strings.Contains(r.stderr, "1 to 64 letters, digits") {
		t.Fatalf("%+v", r)
	}
}

// Pushing a node the CA retired (ca revoke ID) warns on stderr: its
// published bundle is revoked.
func TestPushWarnsOfARetiredNode(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	for _, args := range [][]string{{"ca", "init", "--dir", ca, "--name", "c"}, {"ca", "issue", "--dir", ca, "node", "n1", "n2"}, {"ca", "revoke", "--dir", ca, "n2"}} {
		if code, _, stderr := runIn(args...); code != 0 {
			t.Fatalf("%v: %s", args, stderr)
		}
	}
	inv := filepath.Join(dir, "nodes.toml")
	os.WriteFile(inv, []byte("[defaults]\nuser = \"root\"\nknown_hosts = \""+filepath.ToSlash(filepath.Join(dir, "kh"))+"\"\ntarget = \"/in\"\ntimeout = \"2s\"\n[[node]]\nid = \"n1\"\naddress = \"127.0.0.1:1\"\n[[node]]\nid = \"n2\"\naddress = \"127.0.0.1:1\"\n"), 0o600)
	_, _, stderr := runIn("push", "--inventory", inv, "--ca-dir", ca, "--dry-run")
	if !strings.Contains(stderr, "warning: node n2 was retired") || strings.Contains(stderr, "node n1 was retired") {
		t.Errorf("stderr:\n%s", stderr)
	}
}
