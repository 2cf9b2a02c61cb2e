package platform

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A full disk: a 64 KiB tmpfs, mounted for the test, cannot take a 1 MiB
// file. The error says so and what to do; the old file is intact and no
// temporary file is left.
func TestAtomicWriteOnAFullDiskKeepsTheOldFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (scripts/test runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	p := filepath.Join(dir, "cluster.crt")
	old := []byte("the old certificate\n")
	if err := WriteFileAtomic(p, old, 0o644, NoOwner); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(p, bytes.Repeat([]byte("x"), 1<<20), 0o644, NoOwner)
	if err == nil {
		t.Fatal("a 1 MiB write to a 64 KiB file system succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "file system is full") {
		t.Fatalf("err %q, want ENOSPC naming %s and saying the file system is full", err, p)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, old) {
		t.Fatalf("old file now %d bytes, want it intact", len(b))
	}
	if l := leftovers(t, dir, "cluster.crt"); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}
