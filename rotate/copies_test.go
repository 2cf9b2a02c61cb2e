package rotate_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// copyStore is a store in the copy mode, on any system.
func copyStore(dir string) *rotate.Store {
	return &rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2, Link: rotate.LinkCopy}
}

// crashStepHelper installs B over A with copies and ends the process at
// step, as a crash would there: no deferred function runs, nothing is
// cleaned up.
func crashStepHelper(dir, step string) {
	s := copyStore(dir)
	rotate.SetCrashAt(s, func(at string) {
		if at == step {
			os.Exit(3)
		}
	})
	if _, err := s.Install(files("CERT-B", "KEY-B"), "B"); err != nil {
		fmt.Println("install:", err)
		os.Exit(1)
	}
	fmt.Println("the install finished: step", step, "never came")
	os.Exit(1)
}

// The copies' swap, crashed at each of its steps: before recovery each
// file is whole (A's or B's), a mixed pair only under a journal; after
// it, the live set is B, whole, and nothing of the swap is left.
func TestCopiesSwapCrashedAtEachStepIsFinishedByRecovery(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"journaled", "copied node.crt", "copied node.key", "pointed"} {
		t.Run(step, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if _, err := copyStore(dir).Install(files("CERT-A", "KEY-A"), "A"); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), "CERTKEEPER_CRASH_STEP_DIR="+dir, "CERTKEEPER_CRASH_STEP="+step)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 {
				t.Fatalf("helper: %v: %s", err, out)
			}
			crt, key := readVisible(t, dir, "node.crt"), readVisible(t, dir, "node.key")
			_, journal := os.Stat(filepath.Join(dir, "..swap"))
			if crt[len("CERT-"):] != key[len("KEY-"):] && journal != nil {
				t.Fatalf("a mixed pair (%s, %s) with no journal", crt, key)
			}
			if journal != nil {
				t.Fatalf("no ..swap journal after a crash at %q: %v", step, journal)
			}
			if err := copyStore(dir).Recover(); err != nil {
				t.Fatal(err)
			}
			if crt, key := readVisible(t, dir, "node.crt"), readVisible(t, dir, "node.key"); crt != "CERT-B" || key != "KEY-B" {
				t.Fatalf("after recovery: %s, %s; want B's pair", crt, key)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "..data")); strings.TrimSpace(string(b)) != "..gen-000002" {
				t.Fatalf("..data names %q after recovery, want ..gen-000002", b)
			}
			for _, pattern := range []string{"..swap*", "..copy-*", "..data.tmp", "..tmp-*"} {
				if left, _ := filepath.Glob(filepath.Join(dir, pattern)); len(left) > 0 {
					t.Fatalf("recovery left %v", left)
				}
			}
			// The swap it finished is a generation like any other: one
			// rollback returns to A.
			if _, to, err := copyStore(dir).Rollback(); err != nil || to.Name != "..gen-000001" || readVisible(t, dir, "node.key") != "KEY-A" {
				t.Fatalf("rollback after recovery: %s, %v", to.Name, err)
			}
		})
	}
}

// The admin's mistakes on copies, each repaired from the live generation;
// repairs change nothing else in the directory.
func TestCopiesDriftIsRepaired(t *testing.T) {
	cases := []struct {
		name   string
		unix   bool
		damage func(dir string)
		want   string
	}{
		{"a copy edited", false, func(dir string) { os.WriteFile(filepath.Join(dir, "node.crt"), []byte("EDITED"), 0o644) }, "node.crt content"},
		{"a copy deleted", false, func(dir string) { os.Remove(filepath.Join(dir, "node.key")) }, "node.key missing"},
		{"the key chmod-ed 0644", true, func(dir string) { os.Chmod(filepath.Join(dir, "node.key"), 0o644) }, "node.key mode"},
		{"..data removed", false, func(dir string) { os.Remove(filepath.Join(dir, "..data")) }, "..data data-link"},
		{"the generation's own file edited", false, func(dir string) {
			os.WriteFile(filepath.Join(dir, "..gen-000001", "node.key"), []byte("EDITED"), 0o600)
		}, "node.key content"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.unix {
				testenv.NeedUnix(t, "mode bits")
			}
			dir := filepath.Join(t.TempDir(), "b")
			s := copyStore(dir)
			if _, err := s.Install(files("CERT", "KEY"), "test"); err != nil {
				t.Fatal(err)
			}
			before := testfs.Snapshot(t, dir)
			c.damage(dir)
			drift, err := s.Repair()
			if err != nil {
				t.Fatalf("Repair: %v (%v)", err, drift)
			}
			var got []string
			for _, d := range drift {
				got = append(got, d.Name+" "+string(d.Kind))
			}
			if strings.Join(got, ", ") != c.want {
				t.Fatalf("repaired %v, want %s", drift, c.want)
			}
			if after := testfs.Snapshot(t, dir); after != before {
				t.Fatalf("not restored:\n%s\n---\n%s", before, after)
			}
			if again, err := s.Repair(); err != nil || len(again) != 0 {
				t.Fatalf("after repair, still %v, %v", again, err)
			}
		})
	}
	t.Run("a symlink planted at a name is refused, not written through", func(t *testing.T) {
		testenv.NeedSymlinks(t)
		dir := filepath.Join(t.TempDir(), "b")
		s := copyStore(dir)
		if _, err := s.Install(files("CERT", "KEY"), "test"); err != nil {
			t.Fatal(err)
		}
		evil := filepath.Join(t.TempDir(), "evil")
		os.WriteFile(evil, []byte("EVIL"), 0o644)
		os.Remove(filepath.Join(dir, "node.key"))
		os.Symlink(evil, filepath.Join(dir, "node.key"))
		if _, err := s.Install(files("C2", "K2"), "test"); err == nil || !strings.Contains(err.Error(), "node.key is a symlink") {
			t.Fatalf("Install through a planted symlink: %v", err)
		}
		if drift, err := s.Repair(); err == nil || len(drift) != 1 || drift[0].Kind != rotate.DriftForeign {
			t.Fatalf("Repair of a planted symlink: %v, %v", drift, err)
		}
		if b, _ := os.ReadFile(evil); string(b) != "EVIL" {
			t.Fatal("wrote through the planted symlink")
		}
	})
}

// A directory changes mode at its next recovery: links become copies of
// the same generation, and back; nothing a reader sees changes content.
func TestCopiesAndLinksConvert(t *testing.T) {
	testenv.NeedSymlinks(t)
	dir := filepath.Join(t.TempDir(), "b")
	links := &rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2, Link: rotate.LinkSymlink}
	if _, err := links.Install(files("CERT", "KEY"), "test"); err != nil {
		t.Fatal(err)
	}
	regular := func(want bool) {
		t.Helper()
		for _, n := range []string{"node.crt", "node.key", "..data"} {
			fi, err := os.Lstat(filepath.Join(dir, n))
			if err != nil || fi.Mode().IsRegular() != want {
				t.Fatalf("%s: %v, %v; want regular %v", n, fi, err, want)
			}
		}
		if readVisible(t, dir, "node.crt") != "CERT" || readVisible(t, dir, "node.key") != "KEY" {
			t.Fatal("content changed")
		}
	}
	if err := copyStore(dir).Recover(); err != nil {
		t.Fatal(err)
	}
	regular(true)
	if m, why, err := (&rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner}).LinkMode(); runtime.GOOS == "windows" && (err != nil || m != rotate.LinkCopy || !strings.Contains(why, "its ..data is a file")) {
		t.Fatalf("auto mode of a directory of copies: %v %q %v", m, why, err)
	}
	if err := links.Recover(); err != nil {
		t.Fatal(err)
	}
	regular(false)
	if kept, _ := filepath.Glob(filepath.Join(dir, "..displaced", "*")); len(kept) > 2 {
		t.Errorf("converting back kept %v", kept)
	}
}

// The store's auto mode: links on Unix; on Windows links where this
// process can make them, else copies, saying why.
func TestAutoLinkModeSaysWhatItChose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	s := &rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2}
	if _, err := s.Install(files("CERT", "KEY"), "test"); err != nil {
		t.Fatal(err)
	}
	m, why, err := s.LinkMode()
	if err != nil {
		t.Fatal(err)
	}
	want := rotate.LinkSymlink
	if runtime.GOOS == "windows" && testenv.SymlinksErr() != nil {
		want = rotate.LinkCopy
	}
	if m != want || why == "" {
		t.Fatalf("LinkMode = %s (%q), want %s", m, why, want)
	}
	fi, err := os.Lstat(filepath.Join(dir, "node.key"))
	if err != nil || fi.Mode().IsRegular() != (want == rotate.LinkCopy) {
		t.Fatalf("node.key: %v, %v in mode %s", fi, err, m)
	}
	t.Logf("auto: %s, %s", m, why)
}
