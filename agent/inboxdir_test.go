//go:build linux

package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// asNobody runs a command as the unprivileged user nobody, as an attacker
// on the node would.
func asNobody(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent's user, with nobody as the attacker")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
}

// reachable makes a test directory passable for nobody (t.TempDir is 0700).
func reachable(t *testing.T) string {
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// decoy makes a directory of directories that must survive, the way 15
// home directories did not.
func decoy(t *testing.T, root string) (string, func() []string) {
	d := filepath.Join(root, "decoy")
	for i := range 15 {
		os.MkdirAll(filepath.Join(d, "home"+string(rune('a'+i))), 0o755)
	}
	os.WriteFile(filepath.Join(d, "passwd"), []byte("root:x:0:0\n"), 0o644)
	return d, func() []string {
		es, _ := os.ReadDir(d)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
}

func badSet(t *testing.T, inbox string) []InboxFile {
	os.WriteFile(filepath.Join(inbox, "README"), []byte("not a bundle\n"), 0o600)
	return []InboxFile{{Name: "README", Size: 13}}
}

// (a) An inbox that is a symlink to a decoy (/etc, say): nothing is
// listed, read or moved through it; the refusal names it and the fix.
func TestAnInboxThatIsASymlinkIsRefused(t *testing.T) {
	root := t.TempDir()
	d, names := decoy(t, root)
	before := names()
	inbox := filepath.Join(root, "inbox")
	os.Symlink(d, inbox)
	ib := inboxDir{dir: inbox}
	if _, err := ib.list(); err == nil || !strings.Contains(err.Error(), "inbox "+inbox+" is a symlink") || !strings.Contains(err.Error(), "remove the link") {
		t.Fatalf("list: %v", err)
	}
	if err := ib.ensure(); err == nil {
		t.Fatal("ensure accepted a symlinked inbox")
	}
	if _, err := ib.reject([]InboxFile{{Name: "passwd"}}, "test", time.Now()); err == nil {
		t.Fatal("reject went through a symlinked inbox")
	}
	if after := names(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("the decoy changed: %v -> %v", before, after)
	}
}

// (b) rejected/ a symlink to a directory of directories: pruning removed
// 5 of 15 of them. Now the set is not moved and nothing there is touched.
func TestARejectedDirThatIsASymlinkIsNotPrunedThrough(t *testing.T) {
	root := t.TempDir()
	d, names := decoy(t, root)
	inbox := filepath.Join(root, "inbox")
	os.Mkdir(inbox, 0o700)
	os.Symlink(d, filepath.Join(inbox, rejectedDir))
	ib := inboxDir{dir: inbox}
	_, err := ib.reject(badSet(t, inbox), "test", time.Now())
	if err == nil || !strings.Contains(err.Error(), "inbox "+filepath.Join(inbox, "rejected")+" is a symlink") {
		t.Fatalf("reject: %v", err)
	}
	if n := len(names()); n != 16 {
		t.Fatalf("the decoy holds %d entries, want 16", n)
	}
	if _, err := os.Stat(filepath.Join(inbox, "README")); err != nil {
		t.Fatalf("the set should stay in the inbox: %v", err)
	}
}

// (c) A 0777 inbox in which nobody plants rejected -> a decoy of
// root-owned directories: the inbox is refused as writable by others,
// and the decoy is whole. So is a group-writable inbox whose group the
// bundle does not name; with inbox_group naming it, it is used.
func TestAnInboxWritableByOthersIsRefused(t *testing.T) {
	needRoot(t)
	root := reachable(t)
	d, names := decoy(t, root)
	inbox := filepath.Join(root, "inbox")
	os.Mkdir(inbox, 0o700)
	os.Chmod(inbox, 0o777)
	asNobody(t, "ln", "-s", d, filepath.Join(inbox, rejectedDir))
	asNobody(t, "sh", "-c", "echo x > "+filepath.Join(inbox, "README"))
	ib := inboxDir{dir: inbox}
	for _, op := range []func() error{
		func() error { _, err := ib.list(); return err },
		func() error { _, err := ib.reject([]InboxFile{{Name: "README"}}, "x", time.Now()); return err },
		func() error { return ib.take([]InboxFile{{Name: "README"}}) },
		func() error { _, err := ib.read([]InboxFile{{Name: "README"}}); return err },
		ib.ensure,
	} {
		if err := op(); err == nil || !strings.Contains(err.Error(), "is writable by others (mode 0777); nothing in it is touched: chmod o-w") {
			t.Fatalf("%v", err)
		}
	}
	if n := len(names()); n != 16 {
		t.Fatalf("the decoy holds %d entries, want 16", n)
	}

	os.Remove(filepath.Join(inbox, rejectedDir))
	os.Chown(inbox, 0, 65534)
	os.Chmod(inbox, 0o770)
	if _, err := ib.list(); err == nil || !strings.Contains(err.Error(), `writable by group nogroup (mode 0770), which the bundle does not name; nothing in it is touched: chmod g-w it, or set inbox_group = "nogroup"`) {
		t.Fatalf("group-writable: %v", err)
	}
	ib.group = "nogroup"
	if files, err := ib.list(); err != nil || len(files) != 1 {
		t.Fatalf("with inbox_group: %v %v", files, err)
	}
	ib.group = "root"
	if _, err := ib.list(); err == nil || !strings.Contains(err.Error(), `not by inbox_group "root"`) {
		t.Fatalf("another group: %v", err)
	}

	// An inbox owned by nobody is not the agent's.
	own := filepath.Join(root, "owned")
	os.Mkdir(own, 0o700)
	os.Chown(own, 65534, 65534)
	if _, err := (inboxDir{dir: own}).list(); err == nil || !strings.Contains(err.Error(), "is owned by uid 65534, not the agent's user (uid 0)") {
		t.Fatalf("owned by nobody: %v", err)
	}
}

// A new inbox with inbox_group is made group-writable for that group, and
// accepted; a push account in the group can deliver.
func TestInboxGroupMakesASharedInbox(t *testing.T) {
	needRoot(t)
	root := reachable(t)
	ib := inboxDir{dir: filepath.Join(root, "state", "inbox", "b"), group: "nogroup"}
	if err := ib.ensure(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(ib.dir)
	if fi.Mode().Perm() != 0o770 {
		t.Fatalf("mode %v", fi.Mode())
	}
	out, err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups", "sh", "-c", "echo x > "+filepath.Join(ib.dir, "node.crt")).CombinedOutput()
	if err != nil {
		t.Fatalf("the push account cannot write: %v %s", err, out)
	}
	if files, err := ib.list(); err != nil || len(files) != 1 {
		t.Fatalf("%v %v", files, err)
	}
}

// (d) The clock moved back: pruning by name deleted the newest set at
// once. Sets are pruned by the sequence recorded in their names, so the
// newest stays whatever the clock says, and an older version's sets
// (named by time) go first.
func TestRejectedSetsArePrunedOldestFirstWhateverTheClock(t *testing.T) {
	inbox := filepath.Join(t.TempDir(), "inbox")
	os.Mkdir(inbox, 0o700)
	os.MkdirAll(filepath.Join(inbox, rejectedDir, "20991231T000000.000Z"), 0o700) // an old version's
	ib := inboxDir{dir: inbox}
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var last string
	for i := range 14 {
		now := t0.Add(time.Duration(i) * time.Hour)
		if i == 12 {
			t0 = t0.Add(-30 * 24 * time.Hour) // the clock set back a month
		}
		dst, err := ib.reject(badSet(t, inbox), "test", now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dst, reasonFile)); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		last = dst
	}
	es, _ := os.ReadDir(filepath.Join(inbox, rejectedDir))
	if len(es) != keepRejected {
		t.Fatalf("%d sets kept, want %d", len(es), keepRejected)
	}
	if _, err := os.Stat(last); err != nil {
		t.Fatalf("the newest set is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(inbox, rejectedDir, "20991231T000000.000Z")); err == nil {
		t.Fatal("the old version's set outlived newer ones")
	}
	var kept []string
	for _, e := range es {
		kept = append(kept, strings.SplitN(e.Name(), "-", 2)[0])
	}
	// os.ReadDir sorts by name: the padded sequences are in order.
	if got := strings.Join(kept, " "); got != "000005 000006 000007 000008 000009 000010 000011 000012 000013 000014" {
		t.Fatalf("kept sequences %s, want 5 to 14 in order", got)
	}
}

// 600 files of 1 MiB took the agent to 942 MiB resident. A set beyond 16
// files or 4 MiB is refused before a byte is read, and the reason says
// which limit.
func TestAnOversizedSetIsRefusedBeforeReading(t *testing.T) {
	inbox := filepath.Join(t.TempDir(), "inbox")
	os.Mkdir(inbox, 0o700)
	var many []InboxFile
	for i := range 600 {
		many = append(many, InboxFile{Name: "f" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Size: 1 << 20})
	}
	ib := inboxDir{dir: inbox}
	if _, err := ib.read(many); err == nil || !strings.Contains(err.Error(), "the set has 600 files, more than the limit of 16") {
		t.Fatalf("600 files: %v", err)
	}
	if _, err := ib.read(many[:5]); err == nil || !strings.Contains(err.Error(), "more than the limit of 4 MiB") {
		t.Fatalf("5 MiB: %v", err)
	}
}

// A rejected set that holds a symlink (a link dropped into the inbox, moved
// there as it was): pruning the set removes the link, not what it points at.
func TestPruningRemovesLinksNotTheirTargets(t *testing.T) {
	root := t.TempDir()
	d, names := decoy(t, root)
	inbox := filepath.Join(root, "inbox")
	os.Mkdir(inbox, 0o700)
	ib := inboxDir{dir: inbox}
	os.Symlink(d, filepath.Join(inbox, "home"))
	if _, err := ib.reject([]InboxFile{{Name: "home"}}, "a symlink", time.Now()); err != nil {
		t.Fatal(err)
	}
	for range keepRejected + 1 {
		if _, err := ib.reject(badSet(t, inbox), "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if sets, _ := filepath.Glob(filepath.Join(inbox, rejectedDir, "000001-*")); len(sets) != 0 {
		t.Fatalf("the first set was not pruned: %v", sets)
	}
	if n := len(names()); n != 16 {
		t.Fatalf("the decoy holds %d entries, want 16", n)
	}
}

// A state directory others may write: before, nobody could plant a symlink
// as the inbox's parent (state/inbox -> a decoy) and the agent, as root,
// took the decoy's root-owned b/ as the inbox and moved its files into
// decoy/b/rejected/. Now an inbox below a directory others can write
// (without the sticky bit) or another user owns is refused, untouched.
func TestAnInboxBelowAWritableDirectoryIsRefused(t *testing.T) {
	needRoot(t)
	root := reachable(t)
	state := filepath.Join(root, "state")
	decoy := filepath.Join(root, "decoy")
	os.MkdirAll(filepath.Join(decoy, "b"), 0o755)
	os.WriteFile(filepath.Join(decoy, "b", "victim.conf"), []byte("root's\n"), 0o644)
	os.Mkdir(state, 0o777)
	os.Chmod(state, 0o777)
	asNobody(t, "ln", "-s", decoy, filepath.Join(state, "inbox"))
	ib := inboxDir{dir: filepath.Join(state, "inbox", "b")}
	_, err := ib.list()
	if err == nil || !strings.Contains(err.Error(), "below "+state+", which is writable by others") {
		t.Fatalf("list: %v, want a refusal naming %s", err, state)
	}
	if err := ib.ensure(); err == nil {
		t.Fatal("ensure accepted the inbox")
	}
	if es, _ := os.ReadDir(filepath.Join(decoy, "b")); len(es) != 1 {
		t.Fatalf("the decoy changed: %v", es)
	}
	// The sticky bit (as /tmp) keeps others from replacing what they do
	// not own: accepted.
	os.Remove(filepath.Join(state, "inbox"))
	os.Chmod(state, 0o777|os.ModeSticky)
	if err := ib.ensure(); err != nil {
		t.Fatalf("below a sticky directory: %v", err)
	}
}
