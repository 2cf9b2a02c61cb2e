package distribute_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// caDir lays out a CA directory the way `certkeeper ca` publishes it:
// DIR/cluster.crt and DIR/nodes/<id>/{node.crt,node.key,cluster.crt}.
func caDir(t testing.TB, ids ...string) (string, *testpki.Pair) {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	testpki.WriteFile(t, dir, "cluster.crt", ca.CertPEM(), 0o644)
	for _, id := range ids {
		d := filepath.Join(dir, "nodes", id)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		leaf := ca.Issue(t, strings.TrimPrefix(id, "control-"), testpki.Options{})
		testpki.WriteFile(t, d, "node.crt", leaf.CertPEM(), 0o644)
		testpki.WriteFile(t, d, "node.key", leaf.KeyPEM(t), 0o600)
		testpki.WriteFile(t, d, "cluster.crt", ca.CertPEM(), 0o644)
	}
	return dir, ca
}

// inventoryFor writes an inventory for servers (one node each) and
// returns its path; extra is added to each [[node]].
func inventoryFor(t testing.TB, client *testsshd.Key, knownHosts string, nodes map[string]string, order []string, extra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# inventory\n[defaults]\nuser = %q\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"20s\"\n", currentUser(t), client.Path, knownHosts)
	for _, id := range order {
		fmt.Fprintf(&b, "\n[[node]]\nid = %q\n%s%s\n", id, nodes[id], extra)
	}
	return testpki.WriteFile(t, t.TempDir(), "nodes.toml", []byte(b.String()), 0o600)
}

func currentUser(t testing.TB) string {
	s := os.Getenv("USER")
	if s == "" {
		s = "root"
	}
	return s
}

// Push to 22 simulated nodes, each its own sshd on its own port and
// directory: 20 succeed, one unreachable and one with a wrong host key
// fail, each with its reason, and the others are not held back.
func TestPushToManyNodesReportsEachOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 21 sshd")
	}
	const good = 20
	client := testsshd.NewKey(t, t.TempDir(), "id_ed25519", "ed25519")
	var ids []string
	nodes := map[string]string{}
	var known bytes.Buffer
	servers := map[string]*testsshd.Server{}
	for i := range good + 1 {
		id := fmt.Sprintf("node-%02d", i)
		s := testsshd.Start(t, testsshd.Options{Client: client})
		os.Mkdir(filepath.Join(s.Dir, "inbox"), 0o700)
		servers[id] = s
		ids = append(ids, id)
		nodes[id] = fmt.Sprintf("address = %q\ntarget = %q\n", s.Addr, filepath.Join(s.Dir, "inbox"))
		key := s.HostKeys[0]
		if i == good {
			key = testsshd.NewKey(t, t.TempDir(), "impostor", "ed25519") // pinned: not the server's key
		}
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s\n", s.Port, key.AuthorizedLine())
	}
	wrongKey := ids[good]
	unreachable := "node-unreachable"
	port := testsshd.FreePort(t)
	ids = append(ids, unreachable)
	nodes[unreachable] = fmt.Sprintf("address = \"127.0.0.1:%d\"\ntarget = \"/nonexistent\"\n", port)
	fmt.Fprintf(&known, "[127.0.0.1]:%d %s\n", port, client.AuthorizedLine())
	kh := testpki.WriteFile(t, t.TempDir(), "known_hosts", known.Bytes(), 0o644)
	dir, _ := caDir(t, ids...)
	inv, err := distribute.LoadInventory(inventoryFor(t, client, kh, nodes, ids, ""))
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	results := distribute.Push(context.Background(), inv.Nodes, distribute.PushOptions{CADir: dir, Concurrency: 8,
		Done: func(r distribute.NodeResult) { done = append(done, r.Node.ID) }})
	if len(results) != len(ids) || len(done) != len(ids) {
		t.Fatalf("%d results, %d reported, for %d nodes", len(results), len(done), len(ids))
	}
	for _, r := range results {
		switch r.Node.ID {
		case unreachable:
			if r.Err == nil || !strings.Contains(r.Err.Error(), "connection refused") {
				t.Errorf("%s: want connection refused, got %v", r.Node.ID, r.Err)
			}
		case wrongKey:
			var hk *distribute.HostKeyChangedError
			if !errors.As(r.Err, &hk) {
				t.Errorf("%s: want a host key refusal, got %v", r.Node.ID, r.Err)
			}
			if ents, _ := os.ReadDir(filepath.Join(servers[wrongKey].Dir, "inbox")); len(ents) != 0 {
				t.Errorf("%s: files written despite the wrong host key", r.Node.ID)
			}
		default:
			if r.Err != nil {
				t.Errorf("%s: %v", r.Node.ID, r.Err)
				continue
			}
			inbox := filepath.Join(servers[r.Node.ID].Dir, "inbox")
			ents, _ := os.ReadDir(inbox)
			if len(ents) != 3 {
				t.Errorf("%s: inbox holds %d entries, want 3 (no temporary files)", r.Node.ID, len(ents))
			}
			for _, name := range []string{"node.crt", "node.key", "cluster.crt"} {
				got, err := os.ReadFile(filepath.Join(inbox, name))
				want, _ := os.ReadFile(filepath.Join(dir, "nodes", r.Node.ID, name))
				fi, _ := os.Stat(filepath.Join(inbox, name))
				if err != nil || !bytes.Equal(got, want) || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: %s: content or mode wrong (%v, %v)", r.Node.ID, name, err, fi.Mode())
				}
			}
		}
	}
}

// --install writes the layout's names and modes into the live directory,
// each file 0600 before its first byte (sftp-server's log shows the order
// of requests), fsynced, and renamed into place.
func TestPushInstallWritesCanonicalNamesAndModes(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sftp.log")
	s := testsshd.Start(t, testsshd.Options{SFTP: "/usr/lib/openssh/sftp-server -e -l DEBUG3 2>>" + log})
	live := filepath.Join(s.Dir, "flocker")
	os.Mkdir(live, 0o700)
	// The CA names a control service's bundle control-HOST; its leaf names HOST.
	dir, _ := caDir(t, "control-admin1")
	inv, err := distribute.LoadInventory(inventoryFor(t, s.Client, s.KnownHosts,
		map[string]string{"control-admin1": fmt.Sprintf("address = %q\ntarget = %q\nlayout = \"flocker-control\"\n", s.Addr, live)}, []string{"control-admin1"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	res := distribute.Push(context.Background(), inv.Nodes, distribute.PushOptions{CADir: dir, Install: true})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if got := strings.Join(res[0].Files, ","); got != "cluster.crt,control-service.crt,control-service.key" {
		t.Fatalf("files %s", got)
	}
	ents, _ := os.ReadDir(live)
	if len(ents) != 3 {
		t.Fatalf("live holds %d entries", len(ents))
	}
	for name, mode := range map[string]os.FileMode{"cluster.crt": 0o644, "control-service.crt": 0o644, "control-service.key": 0o600} {
		fi, err := os.Stat(filepath.Join(live, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", name, fi, err)
		}
	}
	key, _ := os.ReadFile(filepath.Join(live, "control-service.key"))
	want, _ := os.ReadFile(filepath.Join(dir, "nodes", "control-admin1", "node.key"))
	if !bytes.Equal(bytes.TrimSpace(key), bytes.TrimSpace(want)) {
		t.Error("the key's content changed on the way")
	}

	// From sftp-server's own log: for each temporary file, open with
	// CREATE|EXCL, then "set mode 0600", then the first write.
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	checkModeBeforeWrite(t, string(data), 3)

	// An agent-managed directory is refused with --install.
	os.Symlink("..gen-000001", filepath.Join(live, "..data"))
	res = distribute.Push(context.Background(), inv.Nodes, distribute.PushOptions{CADir: dir, Install: true})
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "managed by a certkeeper agent") {
		t.Fatalf("want refused, got %v", res[0].Err)
	}
}

var (
	openRe  = regexp.MustCompile(`open "([^"]*)" flags WRITE,CREATE,EXCL`)
	setRe   = regexp.MustCompile(`set "([^"]*)" mode 0600`)
	writeRe = regexp.MustCompile(`request \d+: write "([^"]*)"`)
)

func checkModeBeforeWrite(t *testing.T, log string, files int) {
	t.Helper()
	state := map[string]string{}
	for _, line := range strings.Split(log, "\n") {
		if m := openRe.FindStringSubmatch(line); m != nil {
			if !strings.Contains(filepath.Base(m[1]), distribute.TempPrefix) {
				t.Errorf("created %s, not a temporary name", m[1])
			}
			state[m[1]] = "open"
		}
		if m := setRe.FindStringSubmatch(line); m != nil && state[m[1]] == "open" {
			state[m[1]] = "0600"
		}
		if m := writeRe.FindStringSubmatch(line); m != nil {
			if state[m[1]] != "0600" && state[m[1]] != "written" {
				t.Errorf("%s written before its mode was 0600 (state %q)", m[1], state[m[1]])
			}
			state[m[1]] = "written"
		}
	}
	n := 0
	for _, s := range state {
		if s == "written" {
			n++
		}
	}
	if n != files {
		t.Errorf("saw %d files written, want %d:\n%s", n, files, log)
	}
}

func TestPushDryRunWritesNothingAndChecksTheTarget(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	inbox := filepath.Join(s.Dir, "inbox")
	os.Mkdir(inbox, 0o700)
	dir, _ := caDir(t, "n1", "n2")
	inv, err := distribute.LoadInventory(inventoryFor(t, s.Client, s.KnownHosts, map[string]string{
		"n1": fmt.Sprintf("address = %q\ntarget = %q\n", s.Addr, inbox),
		"n2": fmt.Sprintf("address = %q\ntarget = %q\n", s.Addr, filepath.Join(s.Dir, "missing")),
	}, []string{"n1", "n2"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	res := distribute.Push(context.Background(), inv.Nodes, distribute.PushOptions{CADir: dir, DryRun: true})
	if res[0].Err != nil || len(res[0].Files) != 3 {
		t.Fatalf("n1: %+v", res[0])
	}
	if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "does not exist on the node") {
		t.Fatalf("n2: %v", res[1].Err)
	}
	if ents, _ := os.ReadDir(inbox); len(ents) != 0 {
		t.Fatal("a dry run wrote files")
	}
}

// A bundle directory on the admin host with a symlink is refused before
// any connection.
func TestPushRefusesASymlinkInTheBundleDirectory(t *testing.T) {
	dir, _ := caDir(t, "n1")
	os.Remove(filepath.Join(dir, "nodes", "n1", "cluster.crt"))
	os.Symlink(filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "nodes", "n1", "cluster.crt"))
	_, err := distribute.PlanNode(distribute.Node{ID: "n1"}, distribute.PushOptions{CADir: dir})
	if err == nil || !strings.Contains(err.Error(), "cluster.crt is a symlink") {
		t.Fatalf("want refused, got %v", err)
	}
}
