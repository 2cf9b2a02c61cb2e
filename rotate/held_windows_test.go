package rotate_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/rotate"
)

// holdOpen opens path as many Windows daemons open their key: share mode
// FILE_SHARE_READ only, so nobody may rename over it or delete it while
// the handle is open. The returned func closes it (once).
func holdOpen(t *testing.T, path string) func() {
	t.Helper()
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ, syscall.FILE_SHARE_READ, nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	closed := false
	release := func() {
		if !closed {
			closed = true
			if err := syscall.CloseHandle(h); err != nil {
				t.Errorf("close %s: %v", path, err)
			}
		}
	}
	t.Cleanup(release)
	return release
}

// A key held open during a swap, and closed within the retry budget (a
// daemon reading its files at a reload): the rename is tried again, and
// the swap completes with nothing left of it.
func TestHeldKeyClosedWithinTheRetriesLetsTheSwapComplete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := copyStore(dir)
	if _, err := s.Install(files("CERT-A", "KEY-A"), "A"); err != nil {
		t.Fatal(err)
	}
	release := holdOpen(t, filepath.Join(dir, "node.key"))
	timer := time.AfterFunc(60*time.Millisecond, release)
	defer timer.Stop()
	start := time.Now()
	if _, err := s.Install(files("CERT-B", "KEY-B"), "B"); err != nil {
		t.Fatalf("install with the key held for 60ms: %v", err)
	}
	took := time.Since(start)
	t.Logf("the install waited %s for the key", took.Round(time.Millisecond))
	if took < 50*time.Millisecond {
		t.Errorf("the install took %s: it did not wait for the held key", took)
	}
	if got := readVisible(t, dir, "node.crt") + " " + readVisible(t, dir, "node.key"); got != "CERT-B KEY-B" {
		t.Errorf("live set %q, want CERT-B KEY-B", got)
	}
	if to, err := s.Swapping(); err != nil || to != "" {
		t.Errorf("Swapping() = %q, %v after a complete swap", to, err)
	}
	assertNoSwapLeftovers(t, dir)
}

// A key held past the retry budget (a daemon holding it for its
// lifetime): the swap stops with an error naming the file, its journal
// stays, the store says it is mid-swap, and once the handle is closed the
// next repair (or recovery) finishes the swap forward.
func TestHeldKeyPastTheRetriesLeavesTheSwapJournaled(t *testing.T) {
	for _, finish := range []string{"repair", "recover", "install"} {
		t.Run(finish, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			s := copyStore(dir)
			if _, err := s.Install(files("CERT-A", "KEY-A"), "A"); err != nil {
				t.Fatal(err)
			}
			key := filepath.Join(dir, "node.key")
			release := holdOpen(t, key)
			start := time.Now()
			_, err := s.Install(files("CERT-B", "KEY-B"), "B")
			took := time.Since(start)
			var held *rotate.HeldError
			if !errors.As(err, &held) {
				t.Fatalf("install with the key held: %v; want a *rotate.HeldError", err)
			}
			t.Logf("after %s: %v", took.Round(time.Millisecond), err)
			if held.Path != key || held.Generation != "..gen-000002" || !held.Held {
				t.Errorf("HeldError{Path: %q, Generation: %q, Held: %v}; want %q, ..gen-000002, true", held.Path, held.Generation, held.Held, key)
			}
			if took > 3*time.Second {
				t.Errorf("the install took %s to give up; the budget is a few hundred ms", took)
			}
			// Mid-swap: the journal names B, and no file was replaced
			// (the swap looks for a held file before its first rename),
			// so the live set is still A's, whole.
			if b, err := os.ReadFile(filepath.Join(dir, "..swap")); err != nil || string(b) != "..gen-000002\n" {
				t.Errorf("..swap holds %q, %v; want ..gen-000002", b, err)
			}
			if to, err := s.Swapping(); err != nil || to != "..gen-000002" {
				t.Errorf("Swapping() = %q, %v; want ..gen-000002", to, err)
			}
			if got := readVisible(t, dir, "node.crt") + " " + readVisible(t, dir, "node.key"); got != "CERT-A KEY-A" {
				t.Errorf("live set mid-swap %q, want CERT-A KEY-A", got)
			}
			// Still held: recovery meets it again, and says so.
			if _, err := s.Repair(); !errors.Is(err, rotate.ErrHeld) {
				t.Errorf("repair with the key still held: %v; want ErrHeld", err)
			}
			release()
			switch finish {
			case "repair":
				if drift, err := s.Repair(); err != nil {
					t.Fatalf("repair after the handle closed: %v (drift %v)", err, drift)
				}
			case "recover":
				if err := s.Recover(); err != nil {
					t.Fatalf("recover after the handle closed: %v", err)
				}
			case "install":
				res, err := s.Install(files("CERT-B", "KEY-B"), "B")
				if err != nil {
					t.Fatalf("install again after the handle closed: %v", err)
				}
				if res.Changed || res.Generation.Name != "..gen-000002" {
					t.Errorf("install again: Changed %v, generation %s; want unchanged ..gen-000002", res.Changed, res.Generation.Name)
				}
			}
			if got := readVisible(t, dir, "node.crt") + " " + readVisible(t, dir, "node.key"); got != "CERT-B KEY-B" {
				t.Errorf("live set %q after the %s, want CERT-B KEY-B", got, finish)
			}
			if g, _, err := s.Live(); err != nil || g.Name != "..gen-000002" {
				t.Errorf("live generation %s, %v; want ..gen-000002", g.Name, err)
			}
			if to, err := s.Swapping(); err != nil || to != "" {
				t.Errorf("Swapping() = %q, %v after the %s", to, err, finish)
			}
			assertNoSwapLeftovers(t, dir)
		})
	}
}

// A holder that shares delete is not seen by the look before the swap
// (platform.HeldOpen), so the swap goes ahead; under Wine 8 its rename of
// that file is refused all the same (Windows lets it through, with POSIX
// semantics): the rename's own retries then give up, the journal keeps
// the half-done swap, and the next repair finishes it once the handle is
// closed.
func TestHeldKeySharingDeleteMeetsTheRenameRetries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := copyStore(dir)
	if _, err := s.Install(files("CERT-A", "KEY-A"), "A"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "node.key")
	p, _ := syscall.UTF16PtrFromString(key)
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ, syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	release := func() {
		if !closed {
			closed = true
			syscall.CloseHandle(h)
		}
	}
	defer release()
	_, err = s.Install(files("CERT-B", "KEY-B"), "B")
	if !testenv.UnderWine() {
		if err != nil {
			t.Fatalf("install with the key held, sharing delete: %v; Windows renames over such a holder", err)
		}
		return
	}
	var held *rotate.HeldError
	if !errors.As(err, &held) || held.Held || held.Path != key || held.Tries != 6 {
		t.Fatalf("install with the key held, sharing delete: %v; want a *rotate.HeldError after 6 tries, no holder seen", err)
	}
	t.Logf("%v", err)
	// Torn, but journaled: the certificate is B's, the key A's.
	if got := readVisible(t, dir, "node.crt") + " " + readVisible(t, dir, "node.key"); got != "CERT-B KEY-A" {
		t.Errorf("live set mid-swap %q, want CERT-B KEY-A", got)
	}
	if to, err := s.Swapping(); err != nil || to != "..gen-000002" {
		t.Errorf("Swapping() = %q, %v; want ..gen-000002", to, err)
	}
	release()
	if _, err := s.Repair(); err != nil {
		t.Fatalf("repair after the handle closed: %v", err)
	}
	if got := readVisible(t, dir, "node.crt") + " " + readVisible(t, dir, "node.key"); got != "CERT-B KEY-B" {
		t.Errorf("live set %q after the repair, want CERT-B KEY-B", got)
	}
	assertNoSwapLeftovers(t, dir)
}

// Drift repair of a copy that is held open: the repair says so (no swap,
// nothing journaled), and gets through once the handle is closed.
func TestHeldDriftedKeyIsRepairedOnceClosed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := copyStore(dir)
	if _, err := s.Install(files("CERT-A", "KEY-A"), "A"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "node.key")
	if err := os.WriteFile(key, []byte("edited"), 0o600); err != nil {
		t.Fatal(err)
	}
	release := holdOpen(t, key)
	_, err := s.Repair()
	var held *rotate.HeldError
	if !errors.As(err, &held) || !held.Repair || held.Path != key {
		t.Fatalf("repair of the held, edited key: %v; want a *rotate.HeldError for %s from the repair", err, key)
	}
	if to, err := s.Swapping(); err != nil || to != "" {
		t.Errorf("Swapping() = %q, %v: a repair is no swap", to, err)
	}
	release()
	if _, err := s.Repair(); err != nil {
		t.Fatalf("repair after the handle closed: %v", err)
	}
	if got := readVisible(t, dir, "node.key"); got != "KEY-A" {
		t.Errorf("node.key holds %q after the repair, want KEY-A", got)
	}
	assertNoSwapLeftovers(t, dir)
}

func assertNoSwapLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n == "..swap" || n == "..swap.tmp" || len(n) > 7 && n[:7] == "..copy-" {
			t.Errorf("%s is left in %s", n, dir)
		}
	}
}
