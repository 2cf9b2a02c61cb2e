package platform_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/certkeeper/certkeeper/platform"
)

// What a rename over a file another handle holds open answers, by share
// mode, and whether HeldOpen sees the holder: measured under Wine 8, and
// what real Windows answers too where it differs only for a holder that
// shares delete (Windows then lets a POSIX-semantics rename through; Wine
// refuses it).
func TestHeldOpenAndRenameBusy(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "node.key")
	for _, c := range []struct {
		name  string
		share uint32
		held  bool
	}{
		{"FILE_SHARE_READ", syscall.FILE_SHARE_READ, true},
		{"FILE_SHARE_READ|WRITE (Go's os.Open)", syscall.FILE_SHARE_READ | syscall.FILE_SHARE_WRITE, true},
		{"every share mode", syscall.FILE_SHARE_READ | syscall.FILE_SHARE_WRITE | syscall.FILE_SHARE_DELETE, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target+".new", []byte("new"), 0o600); err != nil {
				t.Fatal(err)
			}
			p, _ := syscall.UTF16PtrFromString(target)
			h, err := syscall.CreateFile(p, syscall.GENERIC_READ, c.share, nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := platform.HeldOpen(target); got != c.held {
				t.Errorf("HeldOpen = %v, want %v", got, c.held)
			}
			t.Logf("holders: %q", platform.Holders(target))
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = root.Rename("node.key.new", "node.key")
			root.Close()
			t.Logf("rename over it: %v", err)
			if c.held && (err == nil || !platform.RenameBusy(err)) {
				t.Errorf("rename over a held file: %v; want an error RenameBusy knows", err)
			}
			if err != nil && !platform.RenameBusy(err) {
				t.Errorf("RenameBusy(%v) = false", err)
			}
			syscall.CloseHandle(h)
			if platform.HeldOpen(target) {
				t.Error("HeldOpen after the handle closed")
			}
			if err := os.Rename(target+".new", target); err != nil && c.held {
				t.Errorf("rename after the handle closed: %v", err)
			}
			os.Remove(target + ".new")
		})
	}
}
