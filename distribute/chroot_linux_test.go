package distribute_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// The admin host's set-up, end to end with a real sshd: `sshd-config`'s
// Match blocks (included as a drop-in), chroots filled by SyncChroots,
// authorized_keys files with StrictModes on, and two node accounts. Node A
// reads its own bundle; it can not read node B's, neither with certkeeper
// nor with OpenSSH's own sftp client trying to climb out; it can not
// write; its key does not open node B's account.
//
// The accounts exist only inside a private mount namespace (the test binds
// copies of /etc/passwd and /etc/group there for sshd), so the machine is
// not changed. The chroots must sit on a root-owned path that no one else
// can write, as sshd demands: a temporary directory under /srv.
func TestChrootNodeReadsOnlyItsOwnBundle(t *testing.T) {
	testsshd.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	if err := exec.Command("unshare", "--mount", "--propagation", "private", "true").Run(); err != nil {
		t.Skipf("no mount namespaces here: %v", err)
	}
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("OpenSSH's sftp client is missing (openssh-client)")
	}
	base, err := os.MkdirTemp("/srv", "certkeeper-test-")
	if err != nil {
		t.Skipf("no root-owned place for chroots: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// sshd reads authorized_keys as the account: it must reach the file.
	os.Chmod(base, 0o755)
	if err := distribute.CheckRootChain(base); err != nil {
		t.Skipf("/srv is not usable for chroots here: %v", err)
	}

	dir, _ := caDir(t, "node-a", "node-b")
	keysDir := t.TempDir()
	keyA := testsshd.NewKey(t, keysDir, "id_a", "ed25519")
	keyB := testsshd.NewKey(t, keysDir, "id_b", "ed25519")
	pubA := testpki.WriteFile(t, keysDir, "id_a.pub", []byte(keyA.AuthorizedLine()+"\n"), 0o644)
	inv, err := distribute.ParseInventory(filepath.Join(keysDir, "nodes.toml"), []byte(fmt.Sprintf(`# inventory
[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"

[[node]]
id = "node-a"
address = "10.0.0.1"
account = "ck-test-a"
public_key_file = %q

[[node]]
id = "node-b"
address = "10.0.0.2"
account = "ck-test-b"
public_key = %q
`, pubA, keyB.AuthorizedLine())))
	if err != nil {
		t.Fatal(err)
	}
	gids := map[string]int{"ck-test-a": 61001, "ck-test-b": 61002}
	o := distribute.SSHDOptions{ChrootDir: filepath.Join(base, "chroot"), KeysDir: filepath.Join(base, "keys"),
		Group: func(a string) (int, error) { return gids[a], nil }}
	res, err := distribute.SyncChroots(inv.Nodes, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Changed {
		t.Fatalf("sync: %+v", res)
	}
	// A second sync with nothing new changes nothing.
	if res, err := distribute.SyncChroots(inv.Nodes, dir, o); err != nil || res[0].Changed || res[1].Changed {
		t.Fatalf("second sync: %+v %v", res, err)
	}
	fi, _ := os.Stat(filepath.Join(base, "chroot", "node-a", "nodes", "node-a", "node.key"))
	if fi.Mode().Perm() != 0o440 {
		t.Fatalf("node.key in the chroot has mode %v", fi.Mode())
	}

	passwd, _ := os.ReadFile("/etc/passwd")
	group, _ := os.ReadFile("/etc/group")
	passwd = append(passwd, "ck-test-a:x:61001:61001::/:/usr/sbin/nologin\nck-test-b:x:61002:61002::/:/usr/sbin/nologin\n"...)
	group = append(group, "ck-test-a:x:61001:\nck-test-b:x:61002:\n"...)
	etc := t.TempDir()
	fragment := testpki.WriteFile(t, etc, "certkeeper.conf", []byte(distribute.SSHDConfig(inv.Nodes, o)), 0o644)
	s := testsshd.Start(t, testsshd.Options{
		StrictModes: true,
		Config:      "Include " + fragment + "\n",
		Namespace: map[string]string{
			"/etc/passwd": testpki.WriteFile(t, etc, "passwd", passwd, 0o644),
			"/etc/group":  testpki.WriteFile(t, etc, "group", group, 0o644),
		},
	})
	kh := s.KnownHosts

	// Node A pulls its own bundle with certkeeper.
	c, err := distribute.Dial(context.Background(), distribute.Target{Address: s.Addr, User: "ck-test-a", IdentityFile: keyA.Path, KnownHosts: kh})
	if err != nil {
		t.Fatalf("node A logs in: %v\nsshd: %s", err, s.Log())
	}
	defer c.Close()
	in, err := c.Fetch(context.Background(), "nodes/node-a", distribute.DefaultLimits, nil)
	if err != nil || len(in) != 3 {
		t.Fatalf("node A reads its bundle: %v %d", err, len(in))
	}
	for _, f := range in {
		want, _ := os.ReadFile(filepath.Join(dir, "nodes", "node-a", f.Name))
		if !bytes.Equal(f.Data, want) {
			t.Errorf("%s differs from the CA's", f.Name)
		}
	}
	if _, err := c.Fetch(context.Background(), "nodes/node-b", distribute.DefaultLimits, nil); err == nil {
		t.Fatal("node A read node B's directory")
	}
	for _, p := range []string{filepath.Join(base, "chroot", "node-b", "nodes", "node-b"), filepath.Join(dir, "nodes", "node-b")} {
		if _, err := c.Fetch(context.Background(), p, distribute.DefaultLimits, nil); err == nil {
			t.Fatalf("node A read %s", p)
		}
	}
	if err := c.Upload(context.Background(), "nodes/node-a", []distribute.UploadFile{{Name: "x", Data: []byte("x")}}); err == nil {
		t.Fatal("node A wrote into its chroot")
	}

	// OpenSSH's own client, trying harder: climbing, absolute paths.
	sftp := func(user, key string, batch string) (string, error) {
		b := testpki.WriteFile(t, t.TempDir(), "batch", []byte(batch), 0o600)
		cmd := exec.Command("sftp", "-b", b, "-i", key, "-P", fmt.Sprint(s.Port), "-o", "UserKnownHostsFile="+kh,
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null", user+"@127.0.0.1")
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := sftp("ck-test-a", keyA.Path, "get nodes/node-a/node.key\n"); err != nil {
		t.Fatalf("sftp get own key: %v\n%s", err, out)
	}
	for _, p := range []string{
		"../node-b/nodes/node-b/node.key",
		"/../../node-b/nodes/node-b/node.key",
		filepath.Join(base, "chroot", "node-b", "nodes", "node-b", "node.key"),
		filepath.Join(dir, "nodes", "node-b", "node.key"),
		"/etc/shadow",
	} {
		if out, err := sftp("ck-test-a", keyA.Path, "get "+p+"\n"); err == nil {
			t.Errorf("node A got %s:\n%s", p, out)
		}
	}
	if out, err := sftp("ck-test-a", keyA.Path, "ls -a /\nls -a /nodes\n"); err != nil || strings.Contains(out, "node-b") {
		t.Errorf("node A's view: %v\n%s", err, out)
	}
	if out, err := sftp("ck-test-a", keyA.Path, "put "+pubA+" nodes/node-a/planted\n"); err == nil {
		t.Errorf("node A wrote a file:\n%s", out)
	}
	if out, err := sftp("ck-test-b", keyA.Path, "ls\n"); err == nil {
		t.Errorf("node A's key opened node B's account:\n%s", out)
	}
	if out, err := sftp("ck-test-b", keyB.Path, "get nodes/node-b/node.key\n"); err != nil {
		t.Errorf("node B reads its own key: %v\n%s", err, out)
	}
}
