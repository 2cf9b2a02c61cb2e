// Package testenv says, for tests, what the machine they run on can do,
// and skips a test with the reason when it cannot: a Unix-only tool
// (openssl, sshd, setpriv) on Windows, or a Windows feature Wine lacks.
//
// The Windows tests run under Wine (scripts/test, scripts/wine/): built
// with -tags wine, this package also works around what Wine 8 lacks for
// Go's standard library (see fallback_wine.go).
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// NeedUnix skips t on Windows: it needs what, which only Unix has.
func NeedUnix(t testing.TB, what string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skipf("needs %s, which is Unix only", what)
	}
}

// NeedRealWindows skips t under Wine: it needs what, which Wine does not
// do as Windows does.
func NeedRealWindows(t testing.TB, what string) {
	t.Helper()
	if UnderWine() {
		t.Skipf("needs %s, which Wine lacks (real Windows has it)", what)
	}
}

// NeedUnixPaths skips t on Windows: it checks Unix paths (/etc/…), which
// are not absolute there.
func NeedUnixPaths(t testing.TB) {
	t.Helper()
	NeedUnix(t, "Unix paths (/etc/…, not absolute on Windows)")
}

var (
	symlinksOnce sync.Once
	symlinksErr  error
)

// NeedSymlinks skips t where this process cannot make symbolic links: the
// generation store is made of them. Wine 8 has none (Wine 10.20 added
// them); real Windows needs SeCreateSymbolicLinkPrivilege.
func NeedSymlinks(t testing.TB) {
	t.Helper()
	symlinksOnce.Do(func() { symlinksErr = probeSymlinks() })
	if symlinksErr != nil {
		why := "this process cannot make symbolic links"
		if UnderWine() {
			why = "Wine 8 has no symbolic links (Wine 10.20 added them; Windows has them)"
		}
		t.Skipf("needs symbolic links (the generation store): %s: %v", why, symlinksErr)
	}
}

// SymlinksErr says why this process cannot make symbolic links (nil: it
// can), probed once as NeedSymlinks does.
func SymlinksErr() error {
	symlinksOnce.Do(func() { symlinksErr = probeSymlinks() })
	return symlinksErr
}

// probeSymlinks makes a symbolic link in a temporary directory, through
// os.Root as the store does, and reads it back (Wine 8's CreateSymbolicLink
// reports success and makes nothing).
func probeSymlinks() error {
	dir, err := os.MkdirTemp("", "certkeeper-symlink-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Symlink("f", "l"); err != nil {
		return err
	}
	if target, err := root.Readlink("l"); err != nil || target != "f" {
		return fmt.Errorf("the link reads back as %q, %v", target, err)
	}
	return nil
}
