package distribute_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
)

const testPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

// inventoryOf parses an inventory of nodes given as id=mode.
func inventoryOf(t *testing.T, nodes ...string) []distribute.Node {
	t.Helper()
	var b strings.Builder
	b.WriteString("[defaults]\nuser = \"root\"\ntarget = \"/var/lib/certkeeper/inbox/flocker\"\n")
	for i, n := range nodes {
		id, mode, _ := strings.Cut(n, "=")
		fmt.Fprintf(&b, "\n[[node]]\nid = %q\naddress = \"10.0.0.%d\"\nmode = %q\npublic_key = %q\n", id, i+1, mode, testPub)
	}
	inv, err := distribute.ParseInventory("nodes.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return inv.Nodes
}

// The last CSR node switched to pull mode (or removed from the inventory)
// loses its forced `ca sign`: the CA account's file keeps only its header.
// Without a file and without CSR nodes, no file appears.
func TestSyncSignKeysDropsTheLastCSRNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the keys file is root's; run as root (scripts/test does)")
	}
	o := distribute.SSHDOptions{KeysDir: filepath.Join(t.TempDir(), "keys"), CADir: "/var/lib/certkeeper/ca"}
	file := filepath.Join(o.KeysDir, distribute.DefaultCAAccount)

	if path, n, changed, err := distribute.SyncSignKeys(inventoryOf(t, "p1=pull"), o); err != nil || path != "" || n != 0 || changed {
		t.Fatalf("no CSR node, no file: %q %d %v %v", path, n, changed, err)
	}
	if _, err := os.Lstat(file); !os.IsNotExist(err) {
		t.Fatalf("a keys file appeared without CSR nodes: %v", err)
	}

	path, n, changed, err := distribute.SyncSignKeys(inventoryOf(t, "p1=pull", "c1=csr"), o)
	if err != nil || path != file || n != 1 || !changed {
		t.Fatalf("one CSR node: %q %d %v %v", path, n, changed, err)
	}
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "--node c1") {
		t.Fatalf("c1's line is missing:\n%s", data)
	}

	path, n, changed, err = distribute.SyncSignKeys(inventoryOf(t, "p1=pull", "c1=pull"), o)
	if err != nil || path != file || n != 0 || !changed {
		t.Fatalf("CSR node switched to pull: %q %d %v %v", path, n, changed, err)
	}
	data, _ := os.ReadFile(file)
	header, _, _ := distribute.SignKeysFile(nil, o)
	if string(data) != header || strings.Contains(string(data), "ca sign --dir") {
		t.Fatalf("the keys file still lets c1 run ca sign:\n%s", data)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o644 {
		t.Fatalf("keys file mode %v", fi.Mode())
	}
	if _, _, changed, err := distribute.SyncSignKeys(inventoryOf(t, "p1=pull"), o); err != nil || changed {
		t.Fatalf("second sync without CSR nodes changed the file: %v %v", changed, err)
	}
}

// What a node removed from the inventory, or switched to CSR mode, left
// under the keys and chroot directories is listed with the command that
// removes it; what the inventory accounts for is not.
func TestStraysListsWhatNoNodeAccountsFor(t *testing.T) {
	base := t.TempDir()
	o := distribute.SSHDOptions{ChrootDir: filepath.Join(base, "chroot dir"), KeysDir: filepath.Join(base, "keys")}
	nodes := inventoryOf(t, "p1=pull", "b1=pull+csr", "c1=csr")
	for _, d := range []string{"p1", "b1", "gone", "c1"} {
		if err := os.MkdirAll(filepath.Join(o.ChrootDir, d, "nodes", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(o.KeysDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ck-p1", "ck-b1", "ck-gone", "ck-c1", distribute.DefaultCAAccount} {
		if err := os.WriteFile(filepath.Join(o.KeysDir, f), []byte("restrict "+testPub+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	strays, err := distribute.Strays(nodes, o)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range strays {
		got = append(got, s.Path+" | "+s.Remove)
	}
	want := []string{
		filepath.Join(o.KeysDir, "ck-c1") + " | rm -rf -- " + filepath.Join(o.KeysDir, "ck-c1"),
		filepath.Join(o.KeysDir, "ck-gone") + " | rm -rf -- " + filepath.Join(o.KeysDir, "ck-gone"),
		filepath.Join(o.ChrootDir, "c1") + " | rm -rf -- '" + filepath.Join(o.ChrootDir, "c1") + "'",
		filepath.Join(o.ChrootDir, "gone") + " | rm -rf -- '" + filepath.Join(o.ChrootDir, "gone") + "'",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("strays:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Directories that do not exist yet hold nothing stray.
	if s, err := distribute.Strays(nodes, distribute.SSHDOptions{ChrootDir: filepath.Join(base, "none"), KeysDir: filepath.Join(base, "none2")}); err != nil || len(s) != 0 {
		t.Fatalf("%v %v", s, err)
	}
}

// A chroot under a sticky shared directory (/tmp, 1777) is refused with
// advice to choose another place, never with `chmod go-w /tmp`, which
// would break the host.
func TestCheckRootChainStickyDir(t *testing.T) {
	fi, err := os.Stat("/tmp")
	if err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm()&0o022 == 0 {
		t.Skip("no sticky, world-writable /tmp here")
	}
	dir, err := os.MkdirTemp("/tmp", "chroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = distribute.CheckRootChain(dir)
	if err == nil {
		t.Skip("a chroot under /tmp passed (owned by another uid?)")
	}
	if strings.Contains(err.Error(), "chmod go-w /tmp") || !strings.Contains(err.Error(), "sticky") {
		t.Fatalf("CheckRootChain(%s): %v", dir, err)
	}
}
