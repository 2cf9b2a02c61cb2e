package distribute_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// The CSR exchange against a real sshd, each key with its own forced
// command standing in for `certkeeper ca sign`: the request arrives on
// standard input, the answer comes back; a refusal carries its reason,
// made printable; output is bounded; a command that never answers times
// out.
func TestRequestCertificateOverRealSSH(t *testing.T) {
	testsshd.Require(t)
	dir := t.TempDir()
	got := filepath.Join(dir, "request")
	commands := map[string]string{
		"ok":      fmt.Sprintf("cat > %s; echo CHAIN", got),
		"refuse":  "cat >/dev/null; printf 'certkeeper ca sign: node n1: was revoked' >&2; printf '\\033[31m' >&2; exit 1",
		"usage":   "cat >/dev/null; echo 'certkeeper ca sign: --dir DIR is required (the CA directory)' >&2; exit 2",
		"mute":    "cat >/dev/null; exit 1",
		"flood":   "head -c 3000000 /dev/zero",
		"silence": "sleep 30",
	}
	keys := map[string]*testsshd.Key{}
	var auth strings.Builder
	for name, cmd := range commands {
		keys[name] = testsshd.NewKey(t, dir, name, "ed25519")
		// authorized_keys takes the command as written between quotes.
		fmt.Fprintf(&auth, "restrict,command=\"%s\" %s\n", cmd, keys[name].AuthorizedLine())
	}
	s := testsshd.Start(t, testsshd.Options{AuthorizedKeys: auth.String()})
	target := func(name string, timeout time.Duration) distribute.Target {
		return distribute.Target{Address: s.Addr, User: s.User, IdentityFile: keys[name].Path, KnownHosts: s.KnownHosts, Timeout: timeout}
	}
	ctx := context.Background()

	out, err := distribute.RequestCertificate(ctx, target("ok", 20*time.Second), []byte("THE REQUEST"))
	if err != nil || string(out) != "CHAIN\n" {
		t.Fatalf("exchange: %q %v", out, err)
	}
	if b, _ := os.ReadFile(got); string(b) != "THE REQUEST" {
		t.Fatalf("the command read %q", b)
	}

	_, err = distribute.RequestCertificate(ctx, target("refuse", 20*time.Second), []byte("x"))
	var refused *distribute.SignRefusedError
	if !errors.As(err, &refused) || refused.Status != 1 || refused.Host != s.Addr || !strings.Contains(err.Error(), "was revoked") || strings.Contains(err.Error(), "\033") {
		t.Fatalf("refusal: %v", err)
	}
	if _, err = distribute.RequestCertificate(ctx, target("usage", 20*time.Second), []byte("x")); err == nil || !strings.Contains(err.Error(), `restrict,command="certkeeper ca sign --dir DIR --node ID"`) {
		t.Fatalf("a key without the forced command should get the hint: %v", err)
	}
	// A bare failure is not ca sign, which always says why: most often
	// csr_user is the node's chroot account, whose internal-sftp answers.
	if _, err = distribute.RequestCertificate(ctx, target("mute", 20*time.Second), []byte("x")); err == nil || !strings.Contains(err.Error(), "is [source] csr_user (or user) the CA account") {
		t.Fatalf("a failure without a reason should get the hint: %v", err)
	}
	if out, err = distribute.RequestCertificate(ctx, target("flood", 20*time.Second), []byte("x")); err == nil || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("flood: %v (%d bytes)", err, len(out))
	}
	start := time.Now()
	_, err = distribute.RequestCertificate(ctx, target("silence", 2*time.Second), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "running ca sign: no answer within 2s") || time.Since(start) > 15*time.Second {
		t.Fatalf("silence: %v after %s", err, time.Since(start))
	}
	// Host keys are checked as for every connection.
	bad := target("ok", 5*time.Second)
	bad.KnownHosts = testpki.WriteFile(t, dir, "kh", []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, keys["ok"].AuthorizedLine())), 0o644)
	if _, err = distribute.RequestCertificate(ctx, bad, []byte("x")); err == nil || !strings.Contains(err.Error(), "HOST KEY") && !strings.Contains(err.Error(), "host key") {
		t.Fatalf("a wrong pin: %v", err)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                     "plain",
		"two\nlines\n":              "two; lines",
		"\x1b[31mred\x1b[0m":        "[31mred [0m",
		"tab\there\r\n\n  x  \n":    "tab here; x",
		strings.Repeat("a", 3000):   strings.Repeat("a", 2048) + "…",
		"bell\a and nul\x00 inside": "bell  and nul  inside",
	} {
		if got := distribute.Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// A CSR node's authorized_keys line runs only ca sign for its own id, in
// the CA account's file; pull nodes keep their chroot accounts; the
// sshd_config fragment has the CA account's Match block only when some
// node sends CSRs, and it has no ForceCommand.
func TestSSHDConfigForCSRNodes(t *testing.T) {
	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	inv, err := distribute.ParseInventory("nodes.toml", []byte(fmt.Sprintf(`# inventory
[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"

[[node]]
id = "pull-1"
address = "10.0.0.1"
public_key = %[1]q

[[node]]
id = "csr-1"
address = "10.0.0.2"
mode = "csr"
public_key = %[1]q

[[node]]
id = "both.x"
address = "10.0.0.3"
mode = "pull+csr"
public_key = %[1]q
`, pub)))
	if err != nil {
		t.Fatal(err)
	}
	o := distribute.SSHDOptions{CADir: "/srv/my ca"}
	conf := distribute.SSHDConfig(inv.Nodes, o)
	for _, want := range []string{"Match User ck-pull-1\n", "Match User ck-both-x\n", "Match User certkeeper-ca\n\tAuthorizedKeysFile /etc/ssh/certkeeper/authorized_keys/%u\n",
		"--shell /bin/sh certkeeper-ca"} {
		if !strings.Contains(conf, want) {
			t.Errorf("sshd_config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "Match User ck-csr-1") {
		t.Errorf("a csr-only node got a chroot account:\n%s", conf)
	}
	ca := conf[strings.Index(conf, "Match User certkeeper-ca"):]
	if strings.Contains(ca, "ForceCommand") || strings.Contains(ca, "ChrootDirectory") {
		t.Errorf("the CA account's block would override command=:\n%s", ca)
	}
	if c := distribute.SSHDConfig(inv.Nodes[:1], o); strings.Contains(c, "certkeeper-ca") {
		t.Errorf("no CSR node, yet a CA account block:\n%s", c)
	}
	line, err := distribute.SignKeysLine(inv.Nodes[2], o)
	if want := `restrict,command="/usr/bin/certkeeper ca sign --dir '/srv/my ca' --node both.x" ` + pub + " certkeeper-node:both.x"; err != nil || line != want {
		t.Fatalf("line:\n%s\nwant\n%s (%v)", line, want, err)
	}
	file, n, err := distribute.SignKeysFile(inv.Nodes, o)
	if err != nil || n != 2 || strings.Count(file, "restrict,command=") != 2 || strings.Contains(file, "pull-1") {
		t.Fatalf("file (%d, %v):\n%s", n, err, file)
	}
	// An id the CA refuses never becomes a forced command that could not work.
	for _, id := range []string{"n@x", "host:1", "-f", strings.Repeat("a", 65)} {
		if cmd, err := distribute.SignCommandFor(id, o); err == nil || !strings.Contains(err.Error(), "ca sign` would refuse it") {
			t.Errorf("id %q: %q, %v", id, cmd, err)
		}
	}
	for _, bad := range []distribute.SSHDOptions{{}, {CADir: "relative"}, {CADir: `/srv/"x`}, {CADir: "/srv/ca", Certkeeper: "/usr/bin/cert\nkeeper"}} {
		if _, err := distribute.SignKeysLine(inv.Nodes[1], bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
