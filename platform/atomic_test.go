package platform

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// leftovers lists what in dir is not one of want.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		keep := false
		for _, w := range want {
			keep = keep || e.Name() == w
		}
		if !keep {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestAtomicWriteReplacesTheFileWithExactlyItsMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.key")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new"), 0o600, NoOwner); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q, want new", b)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if l := leftovers(t, dir, "node.key"); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// The temporary file is checked after every step of the write (created,
// owned, moded, written, synced): its mode never has a bit the final mode
// lacks, so a key is never readable by another user, not even empty.
func TestAtomicWriteIsNeverMorePermissiveThanTheFinalMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no mode bits; the access list is set before the first byte (TestSecureFile*)")
	}
	old := atomicStep
	t.Cleanup(func() { atomicStep = old })
	for _, mode := range []fs.FileMode{0o600, 0o400, 0o640, 0o644, 0o444} {
		dir := t.TempDir()
		var steps []string
		atomicStep = func(step string, f *os.File) {
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if extra := fi.Mode().Perm() &^ mode; extra != 0 {
				t.Errorf("mode %v: after %s the temporary file is %v, granting %v more", mode, step, fi.Mode().Perm(), extra)
			}
			steps = append(steps, step)
		}
		owner := NoOwner
		if os.Geteuid() == 0 {
			owner = Owner{UID: 65534, GID: 65534, User: "nobody", Group: "nogroup"}
		}
		if err := WriteFileAtomic(filepath.Join(dir, "f"), []byte("secret"), mode, owner); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(steps, " "); !strings.HasSuffix(got, "moded written synced") {
			t.Fatalf("steps %q", got)
		}
		fi, _ := os.Stat(filepath.Join(dir, "f"))
		if fi.Mode().Perm() != mode {
			t.Errorf("final mode %v, want %v", fi.Mode().Perm(), mode)
		}
		if uid, _, _ := FileOwner(fi); owner.UID >= 0 && uid != owner.UID {
			t.Errorf("owner %d, want %d", uid, owner.UID)
		}
	}
}

func TestAtomicWriteErrorLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory where the file should go: the rename fails.
	target := filepath.Join(dir, "node.crt")
	if err := os.MkdirAll(filepath.Join(target, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(target, []byte("x"), 0o644, NoOwner)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Fatalf("err %v, want one naming %s", err, target)
	}
	if l := leftovers(t, dir, "node.crt"); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
	// A failure before the rename (here: an owner that cannot be set as
	// this user) removes the temporary file too.
	if runtime.GOOS != "windows" && os.Geteuid() != 0 {
		p := filepath.Join(dir, "k")
		err := WriteFileAtomic(p, []byte("x"), 0o600, Owner{UID: 0, GID: 0, User: "root", Group: "root"})
		if err == nil || !strings.Contains(err.Error(), "set owner root:root") {
			t.Fatalf("err %v", err)
		}
		if l := leftovers(t, dir, "node.crt"); len(l) > 0 {
			t.Fatalf("left behind: %v", l)
		}
	}
}

func TestAtomicWriteInStaysInsideTheRoot(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := (AtomicWrite{Mode: 0o600}).WriteFileIn(root, "out/f", []byte("x")); err == nil {
		t.Fatal("wrote through a symlink leading out of the root")
	}
	if l := leftovers(t, outside); len(l) > 0 {
		t.Fatalf("written outside the root: %v", l)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	w := AtomicWrite{Mode: 0o600, Temp: "..repair-1"}
	if err := w.WriteFileIn(root, "sub/f", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "f")); !bytes.Equal(b, []byte("y")) {
		t.Fatalf("content %q", b)
	}
	if l := leftovers(t, dir, "out", "sub"); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

func TestWriteNewFileRefusesAnExistingName(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "planted"), []byte("theirs"), 0o666); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := WriteNewFile(root, "planted", []byte("ours"), 0o600, NoOwner, true); err == nil {
		t.Fatal("wrote into a file someone planted")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "planted")); string(b) != "theirs" {
		t.Fatalf("planted file changed to %q", b)
	}
}

func TestTempNames(t *testing.T) {
	n := TempName("node.key")
	if !IsTempName(n) || !strings.HasPrefix(n, ".node.key.tmp-") {
		t.Fatalf("TempName %q not recognised", n)
	}
	for _, s := range []string{"node.key", ".node.key.tmp-", ".x.tmp-0123456789zz", "x.tmp-0123456789ab", ".x.tmp-0123456789abc"} {
		if IsTempName(s) {
			t.Errorf("IsTempName(%q) = true", s)
		}
	}
}
