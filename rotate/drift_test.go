package rotate_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

func intp(i int) *int { return &i }

// FindDrift is a pure judgement over what a directory holds.
func TestFindDrift(t *testing.T) {
	gen := rotate.Generation{Name: "..gen-000003", Files: map[string]rotate.Meta{
		"node.crt": {SHA256: "c", Mode: 0o644, UID: intp(0), GID: intp(0)},
		"node.key": {SHA256: "k", Mode: 0o600},
	}}
	clean := func() rotate.Observed {
		return rotate.Observed{Gen: gen, DataTarget: "..gen-000003", DirUID: 0, DirGID: 0, Owner: platform.NoOwner, CheckModes: true,
			Names: map[string]rotate.ObservedName{"node.crt": {Kind: "link", Target: "..data/node.crt"}, "node.key": {Kind: "link", Target: "..data/node.key"}},
			Files: map[string]rotate.ObservedFile{"node.crt": {Exists: true, Mode: 0o644, SHA256: "c"}, "node.key": {Exists: true, Mode: 0o600, SHA256: "k"}},
		}
	}
	cases := []struct {
		name   string
		change func(o *rotate.Observed)
		want   []string // "name kind"
	}{
		{"intact", func(*rotate.Observed) {}, nil},
		{"key chmod-ed 0644", func(o *rotate.Observed) { f := o.Files["node.key"]; f.Mode = 0o644; o.Files["node.key"] = f }, []string{"node.key mode"}},
		{"chown without a configured owner: against the recorded owner", func(o *rotate.Observed) { f := o.Files["node.crt"]; f.UID = 1000; o.Files["node.crt"] = f }, []string{"node.crt owner"}},
		{"chown without a recorded owner: against the generation directory", func(o *rotate.Observed) { f := o.Files["node.key"]; f.GID = 50; o.Files["node.key"] = f }, []string{"node.key owner"}},
		{"configured owner wins", func(o *rotate.Observed) {
			o.Owner = platform.Owner{UID: 7, GID: -1}
			for n, f := range o.Files {
				f.UID = 7
				o.Files[n] = f
			}
		}, nil},
		{"content replaced through the link", func(o *rotate.Observed) { f := o.Files["node.crt"]; f.SHA256 = "x"; o.Files["node.crt"] = f }, []string{"node.crt content"}},
		{"generation file deleted", func(o *rotate.Observed) { delete(o.Files, "node.key") }, []string{"node.key content"}},
		{"visible name deleted", func(o *rotate.Observed) { o.Names["node.crt"] = rotate.ObservedName{Kind: "missing"} }, []string{"node.crt missing"}},
		{"visible name replaced by a copy", func(o *rotate.Observed) { o.Names["node.key"] = rotate.ObservedName{Kind: "regular"} }, []string{"node.key replaced"}},
		{"links swapped", func(o *rotate.Observed) {
			o.Names["node.crt"] = rotate.ObservedName{Kind: "link", Target: "..data/node.key"}
		}, []string{"node.crt relinked"}},
		{"a foreign symlink is reported, not replaced", func(o *rotate.Observed) {
			o.Names["node.crt"] = rotate.ObservedName{Kind: "link", Target: "/tmp/evil"}
		}, []string{"node.crt foreign"}},
		{"..data removed", func(o *rotate.Observed) { o.DataTarget = "" }, []string{"..data data-link"}},
		{"mode changed in the config: against the config, not the record", func(o *rotate.Observed) {
			o.Modes = map[string]fs.FileMode{"node.key": 0o640, "node.crt": 0o644}
		}, []string{"node.key mode"}},
		{"a file the config names no mode for: against the record", func(o *rotate.Observed) {
			o.Modes = map[string]fs.FileMode{"node.crt": 0o644}
		}, nil},
		{"a group given read: the group first, then the mode", func(o *rotate.Observed) {
			o.Modes = map[string]fs.FileMode{"node.key": 0o640}
			o.Owner = platform.Owner{UID: -1, GID: 106}
			for n, f := range o.Files {
				if n != "node.key" {
					f.GID = 106
				}
				o.Files[n] = f
			}
		}, []string{"node.key owner", "node.key mode"}},
		{"a group's read taken away: the mode first, then the group", func(o *rotate.Observed) {
			f := o.Files["node.key"]
			f.Mode, f.GID = 0o640, 106
			o.Files["node.key"] = f
		}, []string{"node.key mode", "node.key owner"}},
		{"dir_mode and group changed in the config", func(o *rotate.Observed) {
			o.DirMode = 0o750
			o.Owner = platform.Owner{UID: -1, GID: 0}
			o.LiveDir = rotate.ObservedDir{Exists: true, Mode: 0o700, UID: 0, GID: 106}
			o.GenDir = rotate.ObservedDir{Exists: true, Mode: 0o750, UID: 0, GID: 0}
		}, []string{". dir-owner", ". dir-mode"}},
		{"no modes on this system", func(o *rotate.Observed) {
			o.CheckModes = false
			f := o.Files["node.key"]
			f.Mode, f.UID = 0o666, 99
			o.Files["node.key"] = f
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := clean()
			c.change(&o)
			var got []string
			for _, d := range rotate.FindDrift(o) {
				got = append(got, d.Name+" "+string(d.Kind))
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("drift = %v, want %v", got, c.want)
			}
		})
	}
}

func installed(t *testing.T) (*rotate.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "b")
	s := store(t, dir)
	if _, err := s.Install(files("CERT", "KEY"), "test"); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func repair(t *testing.T, s *rotate.Store, want ...rotate.DriftKind) {
	t.Helper()
	drift, err := s.Repair()
	if err != nil {
		t.Fatalf("Repair: %v", err)
	}
	var kinds []rotate.DriftKind
	for _, d := range drift {
		kinds = append(kinds, d.Kind)
	}
	if len(kinds) != len(want) {
		t.Fatalf("repaired %v, want %v", drift, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("repaired %v, want %v", drift, want)
		}
	}
	if again, err := s.Repair(); err != nil || len(again) != 0 {
		t.Fatalf("after repair, still %v, %v", again, err)
	}
}

// The admin's mistakes, each repaired from the live generation.
func TestRepairRestoresTheLiveGeneration(t *testing.T) {
	t.Run("key chmod-ed 0644", func(t *testing.T) {
		testenv.NeedUnix(t, "mode bits (on Windows: TestAccessDriftIsRepaired)")
		s, dir := installed(t)
		before := testfs.Snapshot(t, dir)
		os.Chmod(filepath.Join(dir, "node.key"), 0o644)
		repair(t, s, rotate.DriftMode)
		if mode(t, filepath.Join(dir, "node.key")) != 0o600 || testfs.Snapshot(t, dir) != before {
			t.Fatal("key mode not restored")
		}
	})
	t.Run("content replaced with cp through the link", func(t *testing.T) {
		s, dir := installed(t)
		before := testfs.Snapshot(t, dir)
		os.WriteFile(filepath.Join(dir, "node.crt"), []byte("SOMETHING ELSE"), 0o644)
		repair(t, s, rotate.DriftContent)
		if readVisible(t, dir, "node.crt") != "CERT" || testfs.Snapshot(t, dir) != before {
			t.Fatal("content not restored")
		}
	})
	t.Run("the key's content replaced and made readable", func(t *testing.T) {
		testenv.NeedUnix(t, "mode bits")
		s, dir := installed(t)
		p := filepath.Join(dir, "node.key")
		os.WriteFile(p, []byte("OTHER KEY"), 0o600)
		os.Chmod(p, 0o644)
		if _, err := s.Repair(); err != nil {
			t.Fatal(err)
		}
		if readVisible(t, dir, "node.key") != "KEY" || mode(t, p) != 0o600 {
			t.Fatal("key not restored")
		}
	})
	t.Run("visible link deleted", func(t *testing.T) {
		s, dir := installed(t)
		os.Remove(filepath.Join(dir, "node.crt"))
		repair(t, s, rotate.DriftMissing)
		if readVisible(t, dir, "node.crt") != "CERT" {
			t.Fatal("link not restored")
		}
	})
	t.Run("visible link renamed", func(t *testing.T) {
		s, dir := installed(t)
		os.Rename(filepath.Join(dir, "node.key"), filepath.Join(dir, "old.key"))
		repair(t, s, rotate.DriftMissing)
		if readVisible(t, dir, "node.key") != "KEY" {
			t.Fatal("link not restored")
		}
	})
	t.Run("link replaced by a regular file", func(t *testing.T) {
		needLinks(t) // with copies, a regular file is what is there: "content replaced" covers it
		s, dir := installed(t)
		os.Remove(filepath.Join(dir, "node.crt"))
		os.WriteFile(filepath.Join(dir, "node.crt"), []byte("HAND COPY"), 0o644)
		repair(t, s, rotate.DriftReplaced)
		if readVisible(t, dir, "node.crt") != "CERT" {
			t.Fatal("link not restored")
		}
		if kept, _ := filepath.Glob(filepath.Join(dir, "..displaced", "node.crt.*")); len(kept) != 1 {
			t.Fatalf("hand copy not kept: %v", kept)
		}
	})
	t.Run("..data removed", func(t *testing.T) {
		s, dir := installed(t)
		os.Remove(filepath.Join(dir, "..data"))
		repair(t, s, rotate.DriftData)
		if readVisible(t, dir, "node.key") != "KEY" {
			t.Fatal("..data not restored")
		}
	})
	t.Run("a foreign symlink is left and reported", func(t *testing.T) {
		testenv.NeedSymlinks(t)
		s, dir := installed(t)
		os.Remove(filepath.Join(dir, "node.crt"))
		os.Symlink("/etc/hostname", filepath.Join(dir, "node.crt"))
		drift, err := s.Repair()
		if err == nil || len(drift) != 1 || drift[0].Kind != rotate.DriftForeign {
			t.Fatalf("foreign link: %v, %v", drift, err)
		}
		if target, _ := os.Readlink(filepath.Join(dir, "node.crt")); target != "/etc/hostname" {
			t.Fatal("foreign link replaced")
		}
	})
	t.Run("nothing installed", func(t *testing.T) {
		s := store(t, filepath.Join(t.TempDir(), "none"))
		if _, err := s.Repair(); err != rotate.ErrNoGeneration {
			t.Fatalf("Repair of nothing: %v", err)
		}
	})
}

// Ownership drift is found without a configured owner: against the owner
// each file was created with.
func TestRepairRestoresOwnerWithoutConfiguredOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	s, dir := installed(t)
	os.Chown(filepath.Join(dir, "node.key"), uid, -1)
	m := &rotate.Manager{Spec: rotate.Spec{Name: "b", Layout: rotate.Layout{Dir: dir, CertFile: "node.crt", KeyFile: "node.key"}, Owner: platform.NoOwner}, Store: s}
	var problem string
	for _, f := range m.Status().Files {
		if f.Name == "node.key" {
			problem = f.Problem
		}
	}
	if !strings.Contains(problem, "owner is nobody") {
		t.Fatalf("status does not see the chown: %q", problem)
	}
	repair(t, s, rotate.DriftOwner)
	fi, _ := os.Stat(filepath.Join(dir, "node.key"))
	if u, _, _ := platform.FileOwner(fi); u != 0 {
		t.Fatalf("owner is %d after repair", u)
	}
}

// A kept generation edited while it was live is made whole before a
// rollback shows it again, and its sealed copies are never visible.
func TestRollbackRestoresAnEditedGeneration(t *testing.T) {
	s, dir := installed(t)
	os.WriteFile(filepath.Join(dir, "node.crt"), []byte("TAMPERED"), 0o644) // edits ..gen-000001/node.crt
	if _, err := s.Install(files("CERT2", "KEY2"), "test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Rollback(); err != nil {
		t.Fatal(err)
	}
	if readVisible(t, dir, "node.crt") != "CERT" {
		t.Fatal("rollback showed the edited content")
	}
	sealed := filepath.Join(dir, "..gen-000001", "..sealed")
	if fi, err := os.Stat(sealed); err != nil || (fi.Mode().Perm() != 0o700 && platform.SupportsOwnership) {
		t.Fatalf("sealed dir: %v %v", fi, err)
	}
	filepath.WalkDir(sealed, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && mode(t, p) != 0o600 && platform.SupportsOwnership {
			t.Errorf("%s is not 0600", p)
		}
		return nil
	})
	// Live reads the installed content, never the edited one.
	os.WriteFile(filepath.Join(dir, "node.key"), []byte("EVIL"), 0o600)
	_, got, err := s.Live()
	if err != nil || !bytes.Equal(got["node.key"], []byte("KEY")) {
		t.Fatalf("Live: %q %v", got["node.key"], err)
	}
}

// A generation from before sealed copies (issue 2's store) still repairs
// modes and links; edited content is reported as not restorable.
func TestRepairWithoutSealedCopies(t *testing.T) {
	s, dir := installed(t)
	os.RemoveAll(filepath.Join(dir, "..gen-000001", "..sealed"))
	if platform.SupportsOwnership {
		os.Chmod(filepath.Join(dir, "node.key"), 0o640)
		repair(t, s, rotate.DriftMode)
	}
	os.WriteFile(filepath.Join(dir, "node.crt"), []byte("EDITED"), 0o644)
	if testLinkMode() == rotate.LinkCopy {
		// The edit hit the copy; the generation's own file, intact, is
		// what it is restored from.
		repair(t, s, rotate.DriftContent)
		if readVisible(t, dir, "node.crt") != "CERT" {
			t.Fatal("copy not restored from the generation's file")
		}
		return
	}
	if _, err := s.Repair(); err == nil || !strings.Contains(err.Error(), "no intact sealed copy") {
		t.Fatalf("Repair without sealed copy: %v", err)
	}
}

// A removed ..data is restored to the generation that was live, which after
// a rollback is not the newest one: repair must not undo the rollback.
func TestRepairOfARemovedDataLinkKeepsARollback(t *testing.T) {
	rolledBack := func(t *testing.T) (*rotate.Store, string) {
		s, dir := installed(t)
		if _, err := s.Install(files("CERT2", "KEY2"), "test"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Rollback(); err != nil {
			t.Fatal(err)
		}
		return s, dir
	}
	t.Run("..data removed", func(t *testing.T) {
		s, dir := rolledBack(t)
		os.Remove(filepath.Join(dir, "..data"))
		repair(t, s, rotate.DriftData)
		if readVisible(t, dir, "node.crt") != "CERT" || readVisible(t, dir, "node.key") != "KEY" {
			t.Fatalf("repair made %q live, not the generation rolled back to", readVisible(t, dir, "node.crt"))
		}
	})
	t.Run("..data pointed elsewhere", func(t *testing.T) {
		s, dir := rolledBack(t)
		os.Remove(filepath.Join(dir, "..data"))
		os.Symlink("/etc", filepath.Join(dir, "..data"))
		repair(t, s, rotate.DriftData)
		if readVisible(t, dir, "node.crt") != "CERT" {
			t.Fatalf("repair made %q live, not the generation rolled back to", readVisible(t, dir, "node.crt"))
		}
	})
	// A directory from before the record (or one whose record was
	// removed too) falls back to the newest generation.
	t.Run("..data and ..live removed", func(t *testing.T) {
		s, dir := rolledBack(t)
		os.Remove(filepath.Join(dir, "..data"))
		os.Remove(filepath.Join(dir, "..live"))
		repair(t, s, rotate.DriftData)
		if readVisible(t, dir, "node.crt") != "CERT2" {
			t.Fatalf("without a record, repair made %q live, not the newest", readVisible(t, dir, "node.crt"))
		}
	})
}

// The config is the truth: a key_mode, dir_mode and group changed in the
// config reach the live files on the next repair, with no install, and
// status shows the difference until then.
func TestRepairBringsFilesInLineWithTheConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	grp, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skip("no group nogroup")
	}
	gid, _ := strconv.Atoi(grp.Gid)
	_, dir := installed(t)
	l := rotate.Layout{Dir: dir, CertFile: "node.crt", KeyFile: "node.key", DirMode: 0o750, CertMode: 0o644, KeyMode: 0o640}
	owner := platform.Owner{UID: -1, GID: gid, Group: "nogroup"}
	s := rotate.NewStore(l, owner, 2)
	s.Link = testLinkMode()
	m := &rotate.Manager{Spec: rotate.Spec{Name: "b", Layout: l, Owner: owner}, Store: s}
	st := m.Status()
	var problems []string
	for _, f := range st.Files {
		if f.Problem != "" {
			problems = append(problems, f.Name+": "+f.Problem)
		}
	}
	if got := strings.Join(problems, "; "); !strings.Contains(got, "node.key: owner is root:root, want root:nogroup") || !strings.Contains(got, "directory mode is 0700, want 0750") {
		t.Fatalf("status does not show the config's modes: %s", got)
	}
	drift, err := s.Repair()
	if err != nil {
		t.Fatalf("Repair: %v (%v)", err, drift)
	}
	check := func(p string, mode fs.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		_, g, _ := platform.FileOwner(fi)
		if fi.Mode().Perm() != mode || g != gid {
			t.Fatalf("%s: mode %04o group %d, want %04o group %d", p, fi.Mode().Perm(), g, mode, gid)
		}
	}
	check(dir, 0o750)
	check(liveGenDir(t, dir)+"/", 0o750)
	check(filepath.Join(dir, "node.key"), 0o640)
	check(filepath.Join(dir, "node.crt"), 0o644)
	if again, err := s.Repair(); err != nil || len(again) != 0 {
		t.Fatalf("after repair, still %v, %v", again, err)
	}
	for _, f := range m.Status().Files {
		if f.Problem != "" && f.Role != "ca (kept, not read by the daemon)" {
			t.Fatalf("status after repair: %s: %s", f.Name, f.Problem)
		}
	}
}
