package rotate_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

func store(t *testing.T, dir string) *rotate.Store {
	t.Helper()
	if testLinkMode() == rotate.LinkSymlink {
		testenv.NeedSymlinks(t)
	}
	return &rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2, Link: testLinkMode()}
}

func files(cert, key string) []rotate.File {
	return []rotate.File{
		{Name: "node.crt", Data: []byte(cert), Mode: 0o644},
		{Name: "node.key", Data: []byte(key), Mode: 0o600},
	}
}

func readVisible(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestStoreFirstInstallCreatesDirectoryLinksAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "flocker")
	s := store(t, dir)
	in, err := s.Install(files("CERT1", "KEY1"), "test")
	if err != nil || !in.Changed {
		t.Fatalf("Install = %v, %v", in.Changed, err)
	}
	if in.Generation.Name != "..gen-000001" {
		t.Errorf("generation %q", in.Generation.Name)
	}
	if platform.SupportsOwnership { // Windows: access lists (platform's tests)
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("directory mode %04o, want 0700", m)
		}
		if m := mode(t, filepath.Join(dir, "node.key")); m != 0o600 {
			t.Errorf("key mode %04o, want 0600", m)
		}
		if m := mode(t, filepath.Join(dir, "node.crt")); m != 0o644 {
			t.Errorf("cert mode %04o, want 0644", m)
		}
	}
	if readVisible(t, dir, "node.crt") != "CERT1" || readVisible(t, dir, "node.key") != "KEY1" {
		t.Error("visible files do not hold the installed content")
	}
	if testLinkMode() == rotate.LinkCopy {
		if fi, err := os.Lstat(filepath.Join(dir, "node.key")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("node.key: %v, %v; want a regular file, a copy", fi, err)
		}
		return
	}
	target, err := os.Readlink(filepath.Join(dir, "node.key"))
	if err != nil || target != "..data/node.key" {
		t.Errorf("node.key -> %q, %v", target, err)
	}
}

// liveGenDir is the live generation's directory, whichever form ..data
// has (a link, or in the copy mode a file naming it).
func liveGenDir(t *testing.T, dir string) string {
	t.Helper()
	if target, err := os.Readlink(filepath.Join(dir, "..data")); err == nil {
		return filepath.Join(dir, target)
	}
	b, err := os.ReadFile(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, strings.TrimSpace(string(b)))
}

func TestStoreIdenticalContentChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	if _, err := s.Install(files("C", "K"), "one"); err != nil {
		t.Fatal(err)
	}
	before := testfs.Snapshot(t, dir)
	in, err := s.Install(files("C", "K"), "two")
	if err != nil || in.Changed || len(in.Repaired) != 0 {
		t.Fatalf("second identical Install: changed=%v repaired=%v err=%v", in.Changed, in.Repaired, err)
	}
	if in.Generation.Name != "..gen-000001" {
		t.Errorf("generation %q, want the first", in.Generation.Name)
	}
	if after := testfs.Snapshot(t, dir); after != before {
		t.Errorf("directory changed:\n%s\n---\n%s", before, after)
	}
}

func TestStoreRollbackAndPrune(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	for i := 1; i <= 5; i++ {
		n := string(rune('0' + i))
		if _, err := s.Install(files("C"+n, "K"+n), "test"); err != nil {
			t.Fatal(err)
		}
	}
	gens, err := s.Generations()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range gens {
		names = append(names, g.Name)
	}
	if got := strings.Join(names, " "); got != "..gen-000003 ..gen-000004 ..gen-000005" {
		t.Fatalf("generations after 5 installs with keep=2: %s", got)
	}
	from, to, err := s.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	if from.Name != "..gen-000005" || to.Name != "..gen-000004" {
		t.Fatalf("rollback %s -> %s", from.Name, to.Name)
	}
	if readVisible(t, dir, "node.crt") != "C4" || readVisible(t, dir, "node.key") != "K4" {
		t.Fatal("rollback did not restore generation 4")
	}
	if _, to, err = s.Rollback(); err != nil || to.Name != "..gen-000003" {
		t.Fatalf("second rollback: %v %v", to.Name, err)
	}
	if _, _, err := s.Rollback(); err == nil || !strings.Contains(err.Error(), "no generation older") {
		t.Fatalf("rollback past the oldest: %v", err)
	}
	// An install after a rollback takes the next number and keeps the
	// newest others.
	in, err := s.Install(files("C6", "K6"), "test")
	if err != nil || in.Generation.Name != "..gen-000006" {
		t.Fatalf("install after rollback: %v %v", in.Generation.Name, err)
	}
}

// Files copied by hand (the Flocker guide's scp + mv) are adopted: the
// first install swaps all names at once, and the loose key mode is gone.
func TestStoreAdoptsHandCopiedFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "flocker")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, dir, "node.crt", []byte("OLDC"), 0o644)
	testpki.WriteFile(t, dir, "node.key", []byte("OLDK"), 0o644)
	s := store(t, dir)
	if _, err := s.Install(files("NEWC", "NEWK"), "test"); err != nil {
		t.Fatal(err)
	}
	if readVisible(t, dir, "node.crt") != "NEWC" || readVisible(t, dir, "node.key") != "NEWK" {
		t.Fatal("new content not live")
	}
	if m := mode(t, dir); m != 0o700 && platform.SupportsOwnership {
		t.Errorf("directory mode %04o, want 0700 (the Flocker guide's chmod)", m)
	}
	gens, _ := s.Generations()
	if len(gens) != 2 || gens[0].Source == "" || !strings.HasPrefix(gens[0].Source, "adopted") {
		t.Fatalf("want the adopted generation kept for rollback, got %+v", gens)
	}
	old, err := s.ReadGeneration(gens[0])
	if err != nil || string(old["node.key"]) != "OLDK" {
		t.Fatalf("adopted generation lost the old key: %v", err)
	}
	if m := mode(t, filepath.Join(dir, gens[0].Name, "node.key")); m != 0o600 && platform.SupportsOwnership {
		t.Errorf("adopted key mode %04o, want 0600", m)
	}
}

func TestStoreRefusesPlantedSymlinksAndUnsafeDirectories(t *testing.T) {
	t.Run("symlink at a file name", func(t *testing.T) {
		testenv.NeedSymlinks(t)
		dir := filepath.Join(t.TempDir(), "b")
		s := store(t, dir)
		if _, err := s.Install(files("C", "K"), "test"); err != nil {
			t.Fatal(err)
		}
		evil := filepath.Join(t.TempDir(), "evil")
		testpki.WriteFile(t, filepath.Dir(evil), "evil", []byte("EVIL"), 0o644)
		os.Remove(filepath.Join(dir, "node.key"))
		if err := os.Symlink(evil, filepath.Join(dir, "node.key")); err != nil {
			t.Fatal(err)
		}
		before := testfs.Snapshot(t, dir)
		_, err := s.Install(files("C2", "K2"), "test")
		if err == nil || !strings.Contains(err.Error(), "node.key is a symlink") {
			t.Fatalf("Install through a planted symlink: %v", err)
		}
		if testfs.Snapshot(t, dir) != before {
			t.Error("directory changed")
		}
		if b, _ := os.ReadFile(evil); string(b) != "EVIL" {
			t.Error("wrote through the planted symlink")
		}
	})
	t.Run("directory is a symlink", func(t *testing.T) {
		testenv.NeedSymlinks(t)
		base := t.TempDir()
		real := filepath.Join(base, "real")
		os.Mkdir(real, 0o700)
		link := filepath.Join(base, "link")
		os.Symlink(real, link)
		_, err := store(t, link).Install(files("C", "K"), "test")
		if err == nil || !strings.Contains(err.Error(), "is a symlink") {
			t.Fatalf("Install into a symlinked directory: %v", err)
		}
	})
	t.Run("group-writable directory", func(t *testing.T) {
		testenv.NeedUnix(t, "mode bits")
		dir := filepath.Join(t.TempDir(), "b")
		os.Mkdir(dir, 0o770)
		os.Chmod(dir, 0o770)
		_, err := store(t, dir).Install(files("C", "K"), "test")
		if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Fatalf("Install into a group-writable directory: %v", err)
		}
		if m := mode(t, dir); m != 0o770 {
			t.Error("refused directory was changed")
		}
	})
	t.Run("directory owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to chown")
		}
		dir := filepath.Join(t.TempDir(), "b")
		os.Mkdir(dir, 0o700)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := store(t, dir).Install(files("C", "K"), "test")
		if err == nil || !strings.Contains(err.Error(), "is owned by") {
			t.Fatalf("Install into another user's directory: %v", err)
		}
	})
	t.Run("directory in a file's place", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "b")
		os.MkdirAll(filepath.Join(dir, "node.crt"), 0o700)
		os.Chmod(dir, 0o700)
		_, err := store(t, dir).Install(files("C", "K"), "test")
		if err == nil || !strings.Contains(err.Error(), "not a file") {
			t.Fatalf("Install over a directory: %v", err)
		}
	})
}

func TestStoreSetsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	s.Owner = platform.Owner{UID: 65534, GID: 65534, User: "nobody", Group: "nogroup"}
	if _, err := s.Install(files("C", "K"), "test"); err != nil {
		t.Fatal(err)
	}
	gen := liveGenDir(t, dir)
	for _, p := range []string{dir, filepath.Join(gen, "node.key"), filepath.Join(gen, "node.crt"), gen, filepath.Join(dir, "node.key")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid, gid, _ := platform.FileOwner(fi); uid != 65534 || gid != 65534 {
			t.Errorf("%s owned by %d:%d, want 65534:65534", p, uid, gid)
		}
	}
}

// A live name replaced by a regular file (cp over the link's place, mv) is
// relinked on the next install, and the stray file is kept, not lost.
func TestStoreRelinksDriftedNameAndKeepsTheStrayFile(t *testing.T) {
	needLinks(t)
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	if _, err := s.Install(files("C", "K"), "test"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "node.crt"))
	testpki.WriteFile(t, dir, "node.crt", []byte("HAND-EDITED"), 0o666)
	if in, err := s.Install(files("C", "K"), "test"); err != nil || in.Changed {
		t.Fatalf("Install: changed=%v err=%v", in.Changed, err)
	}
	if readVisible(t, dir, "node.crt") != "C" {
		t.Fatal("drifted name not relinked")
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "..displaced", "node.crt.*"))
	if len(kept) != 1 {
		t.Fatalf("stray file not kept: %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, []byte("HAND-EDITED")) || mode(t, kept[0]) != 0o600 {
		t.Fatal("kept copy differs or is readable by others")
	}
}

func TestStoreRecoverRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	if _, err := s.Install(files("C", "K"), "test"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "..tmp-9-abc"), 0o700)
	testpki.WriteFile(t, filepath.Join(dir, "..tmp-9-abc"), "node.key", []byte("HALF"), 0o600)
	os.Symlink("..gen-000009", filepath.Join(dir, "..data.tmp"))
	os.Remove(filepath.Join(dir, "node.key"))
	if err := s.Recover(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"..tmp-9-abc", "..data.tmp"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s survived recovery", n)
		}
	}
	if readVisible(t, dir, "node.key") != "K" {
		t.Error("missing link not restored")
	}
}

// After a rollback from B to A, installing C and rolling back returns to
// A, what C replaced, not to B, which had been rolled back.
func TestStoreRollbackReturnsToWhatWasReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	for _, c := range []string{"A", "B"} {
		if _, err := s.Install(files(c, "K"+c), "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, to, err := s.Rollback(); err != nil || readVisible(t, dir, "node.crt") != "A" {
		t.Fatalf("first rollback to %s: %v", to.Name, err)
	}
	if _, err := s.Install(files("C", "KC"), "test"); err != nil {
		t.Fatal(err)
	}
	if _, to, err := s.Rollback(); err != nil || readVisible(t, dir, "node.crt") != "A" {
		t.Fatalf("second rollback went to %s (%q): %v", to.Name, readVisible(t, dir, "node.crt"), err)
	}
}

// Pruning keeps what a rollback returns to: the chain of generations each
// live one replaced, before the newest by number. So a rollback never
// returns to a generation the admin already rolled away from.
func TestStorePruneKeepsTheRollbackChain(t *testing.T) {
	install := func(t *testing.T, s *rotate.Store, c string) {
		t.Helper()
		if _, err := s.Install(files(c, "K"+c), "test"); err != nil {
			t.Fatal(err)
		}
	}
	rollback := func(t *testing.T, s *rotate.Store, dir, want string) {
		t.Helper()
		if _, to, err := s.Rollback(); err != nil || readVisible(t, dir, "node.crt") != want {
			t.Fatalf("rollback went to %s (%q), want %q: %v", to.Name, readVisible(t, dir, "node.crt"), want, err)
		}
	}
	t.Run("keep=1", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "b")
		s := store(t, dir)
		s.Keep = 1
		install(t, s, "A")
		install(t, s, "B")
		rollback(t, s, dir, "A")
		install(t, s, "C") // replaces A: A is kept, B (rolled away from) goes
		rollback(t, s, dir, "A")
	})
	t.Run("keep=2", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "b")
		s := store(t, dir)
		install(t, s, "A")
		install(t, s, "B")
		rollback(t, s, dir, "A")
		install(t, s, "C")
		install(t, s, "D") // the chain D -> C -> A is kept; B goes
		rollback(t, s, dir, "C")
		rollback(t, s, dir, "A")
	})
	t.Run("what the live generation replaced is gone", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "b")
		s := store(t, dir)
		install(t, s, "A")
		install(t, s, "B")
		install(t, s, "C")
		os.RemoveAll(filepath.Join(dir, "..gen-000002")) // B, by hand
		before := testfs.Snapshot(t, dir)
		_, _, err := s.Rollback()
		if err == nil || !strings.Contains(err.Error(), "..gen-000002, which it replaced, is no longer kept") {
			t.Fatalf("rollback with B gone: %v (now %q)", err, readVisible(t, dir, "node.crt"))
		}
		if testfs.Snapshot(t, dir) != before {
			t.Fatal("a refused rollback changed the directory")
		}
	})
}

// Installing the live bundle again restores what drifted from it, from the
// incoming bytes, even where no sealed copy is left to repair from (and
// writes that copy again); it changes nothing a reader should see.
func TestStoreInstallOfTheSameFilesRepairsDrift(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	if _, err := s.Install(files("C", "K"), "one"); err != nil {
		t.Fatal(err)
	}
	before := testfs.Snapshot(t, dir)
	os.WriteFile(filepath.Join(dir, "node.crt"), []byte("garbage"), 0o644)
	os.Chmod(filepath.Join(dir, "node.key"), 0o644)
	os.Remove(filepath.Join(dir, "..gen-000001", "..sealed", "node.crt"))
	got, err := s.Install(files("C", "K"), "two")
	if err != nil || got.Changed || got.Generation.Name != "..gen-000001" {
		t.Fatalf("Install of the same files: %+v, %v", got, err)
	}
	var kinds []string
	for _, d := range got.Repaired {
		kinds = append(kinds, d.Name+" "+string(d.Kind))
	}
	want := "node.crt content, node.key mode, node.crt content"
	if !platform.SupportsOwnership {
		want = "node.crt content, node.crt content" // no mode bits to drift
	}
	if k := strings.Join(kinds, ", "); k != want {
		t.Errorf("repaired %s", k)
	}
	if after := testfs.Snapshot(t, dir); after != before {
		t.Errorf("directory not restored:\n%s\n---\n%s", before, after)
	}
}
