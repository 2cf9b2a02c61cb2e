package rotate

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
)

// DriftKind names one way a live directory can differ from its live
// generation.
type DriftKind string

const (
	// DriftData: ..data is missing or points elsewhere.
	DriftData DriftKind = "data-link"
	// DriftMissing: a visible name is gone (deleted, or renamed away).
	DriftMissing DriftKind = "missing"
	// DriftRelinked: a visible name is a link into ..data, but to another
	// file's name.
	DriftRelinked DriftKind = "relinked"
	// DriftReplaced: a visible name is a regular file instead of the link.
	DriftReplaced DriftKind = "replaced"
	// DriftContent: the generation's file (reached through the link) no
	// longer holds what was installed, or is gone.
	DriftContent DriftKind = "content"
	// DriftMode: the generation's file has another mode.
	DriftMode DriftKind = "mode"
	// DriftOwner: the generation's file has another owner or group.
	DriftOwner DriftKind = "owner"
	// DriftDirMode: the live directory or the live generation's directory
	// has another mode than the configured dir_mode.
	DriftDirMode DriftKind = "dir-mode"
	// DriftDirOwner: the live directory or the live generation's directory
	// has another owner or group than the configured one.
	DriftDirOwner DriftKind = "dir-owner"
	// DriftAccess: on Windows, a file's access list grants more than its
	// mode means (a key opened to Everyone or Users): the counterpart of
	// a key chmod-ed to 0644.
	DriftAccess DriftKind = "access"
	// DriftForeign: a visible name is something certkeeper must not
	// replace on its own (a symlink elsewhere, a directory, a device).
	DriftForeign DriftKind = "foreign"
)

// Drift is one difference between the live directory and its live
// generation.
type Drift struct {
	Name   string    `json:"name"`
	Kind   DriftKind `json:"kind"`
	Detail string    `json:"detail"`
	// Copy is set for drift of the copy at a visible name (the copy
	// mode), not of the generation's own file; it is repaired by a fresh
	// copy.
	Copy bool `json:"copy,omitempty"`
}

func (d Drift) String() string { return d.Name + ": " + d.Detail }

// Repairable reports whether Repair fixes this kind of drift by itself.
func (d Drift) Repairable() bool { return d.Kind != DriftForeign }

// Observed is what the live directory holds, as data: the input of
// FindDrift. Inspect fills it from the disk.
type Observed struct {
	// Gen is the live generation as ..meta.json records it.
	Gen Generation
	// DataTarget is what ..data points at; "" when it is missing.
	DataTarget string
	// DataForm is set when ..data has the other mode's form: a file
	// (what the copy mode writes) where names are links, or a link where
	// they are copies. Its repair, a swap, gives it this mode's form.
	DataForm string
	// Names is what each visible name of the generation holds.
	Names map[string]ObservedName
	// Files is what each of the generation's files is now.
	Files map[string]ObservedFile
	// DirUID and DirGID own the generation directory: the owner expected
	// of files whose ..meta.json does not record one. -1 when unknown.
	DirUID, DirGID int
	// Owner is the configured owner (-1 fields: not configured).
	Owner platform.Owner
	// Modes is the configured mode of each file (Store.Modes); a name it
	// lacks is judged against the mode recorded at install.
	Modes map[string]fs.FileMode
	// DirMode is the configured dir_mode (0: not judged); LiveDir and
	// GenDir are what the live directory and the live generation's
	// directory are now.
	DirMode         fs.FileMode
	LiveDir, GenDir ObservedDir
	// CheckModes is false where files have no Unix mode and owner.
	CheckModes bool
	// Copies is set in the copy mode: each visible name should be a
	// regular file, a copy of the generation's (see LinkMode).
	Copies bool
}

// ObservedName is what a visible name holds.
type ObservedName struct {
	Kind   string // "link", "missing", "regular", "other"
	Target string // for a link
	// For a regular file in the copy mode: what ObservedFile says of a
	// generation's file.
	Mode     fs.FileMode
	UID, GID int
	SHA256   string
	Loose    []string
}

// ObservedDir is the mode and owner of a directory (Exists false: not seen).
type ObservedDir struct {
	Exists   bool
	Mode     fs.FileMode
	UID, GID int
}

// ObservedFile is one file of the generation directory.
type ObservedFile struct {
	Exists   bool
	Mode     fs.FileMode
	UID, GID int
	SHA256   string
	// Loose is what its access list grants beyond its mode, where access
	// lists are kept (platform.LooseAccess); nil elsewhere.
	Loose []string
}

// FindDrift lists how the live directory differs from its live generation,
// in the order Repair fixes them: the ..data link, then each file's
// content, mode and owner, then the visible names.
func FindDrift(o Observed) []Drift {
	var out []Drift
	if o.DataTarget != o.Gen.Name {
		detail := "missing; the live generation is " + o.Gen.Name
		if o.DataTarget != "" {
			detail = fmt.Sprintf("points at %q instead of the live generation %s", o.DataTarget, o.Gen.Name)
		}
		out = append(out, Drift{Name: dataLink, Kind: DriftData, Detail: detail})
	} else if o.DataForm != "" {
		out = append(out, Drift{Name: dataLink, Kind: DriftData, Detail: o.DataForm})
	}
	if o.CheckModes {
		out = append(out, dirDrift(o, ".", o.LiveDir)...)
		out = append(out, dirDrift(o, o.Gen.Name, o.GenDir)...)
	}
	names := sortedNames(o.Gen.Files)
	for _, name := range names {
		want, f := o.Gen.Files[name], o.Files[name]
		switch {
		case !f.Exists:
			out = append(out, Drift{Name: name, Kind: DriftContent, Detail: "the generation's file is gone"})
		case f.SHA256 != want.SHA256:
			out = append(out, Drift{Name: name, Kind: DriftContent, Detail: "content differs from what was installed (edited or copied over through the link)"})
		}
		if f.Exists && len(f.Loose) > 0 {
			out = append(out, Drift{Name: name, Kind: DriftAccess, Detail: looseDetail(f.Loose, wantMode(o, name, want))})
		}
		if !f.Exists || !o.CheckModes {
			continue
		}
		var mode, owner *Drift
		if wm := wantMode(o, name, want); f.Mode != wm {
			mode = &Drift{Name: name, Kind: DriftMode, Detail: fmt.Sprintf("mode is %04o, want %04o", f.Mode, wm)}
		}
		if uid, gid := wantOwner(o, want); (uid >= 0 && f.UID != uid) || (gid >= 0 && f.GID != gid) {
			owner = &Drift{Name: name, Kind: DriftOwner, Detail: fmt.Sprintf("owner is %s:%s, want %s:%s",
				platform.UserName(f.UID), platform.GroupName(f.GID), ownerName(uid, platform.UserName), ownerName(gid, platform.GroupName))}
		}
		out = appendModeOwner(out, mode, owner, f.Mode, wantMode(o, name, want))
	}
	for _, name := range names {
		n := o.Names[name]
		if o.Copies {
			// With ..data pointing elsewhere, its repair (a swap) writes
			// every copy again: nothing more to judge.
			if o.DataTarget == o.Gen.Name && o.DataForm == "" {
				out = append(out, copyDrift(o, name, n)...)
			}
			continue
		}
		switch n.Kind {
		case "link":
			switch rest, ok := strings.CutPrefix(n.Target, dataLink+"/"); {
			case ok && rest == name:
			case ok && CheckName(rest) == nil:
				out = append(out, Drift{Name: name, Kind: DriftRelinked, Detail: fmt.Sprintf("links to %s instead of %s", n.Target, dataLink+"/"+name)})
			default:
				out = append(out, Drift{Name: name, Kind: DriftForeign, Detail: fmt.Sprintf("is a symlink to %q that certkeeper did not make; move it away and certkeeper restores the link", n.Target)})
			}
		case "missing":
			out = append(out, Drift{Name: name, Kind: DriftMissing, Detail: "missing (deleted or renamed)"})
		case "regular":
			out = append(out, Drift{Name: name, Kind: DriftReplaced, Detail: "replaced by a regular file (kept under ..displaced/)"})
		default:
			out = append(out, Drift{Name: name, Kind: DriftForeign, Detail: "is not a file or link; move it away and certkeeper restores the link"})
		}
	}
	return out
}

// copyDrift judges a visible name in the copy mode: a regular file with
// the generation's content, mode, owner and access.
func copyDrift(o Observed, name string, n ObservedName) []Drift {
	want := o.Gen.Files[name]
	d := func(kind DriftKind, detail string) Drift {
		return Drift{Name: name, Kind: kind, Detail: detail, Copy: true}
	}
	switch n.Kind {
	case "missing":
		return []Drift{d(DriftMissing, "missing (deleted or renamed)")}
	case "link":
		if rest, ok := strings.CutPrefix(n.Target, dataLink+"/"); ok && CheckName(rest) == nil {
			return []Drift{d(DriftReplaced, "is a link into ..data, where this directory keeps copies")}
		}
		return []Drift{{Name: name, Kind: DriftForeign, Detail: fmt.Sprintf("is a symlink to %q that certkeeper did not make; move it away and certkeeper restores the file", n.Target)}}
	case "regular":
	default:
		return []Drift{{Name: name, Kind: DriftForeign, Detail: "is not a file; move it away and certkeeper restores the file"}}
	}
	var out []Drift
	if n.SHA256 != want.SHA256 {
		out = append(out, d(DriftContent, "content differs from what was installed (edited, or copied over)"))
	}
	wm := wantMode(o, name, want)
	if len(n.Loose) > 0 {
		out = append(out, d(DriftAccess, looseDetail(n.Loose, wm)))
	}
	if !o.CheckModes {
		return out
	}
	if n.Mode != wm {
		out = append(out, d(DriftMode, fmt.Sprintf("mode is %04o, want %04o", n.Mode, wm)))
	}
	if uid, gid := wantOwner(o, want); (uid >= 0 && n.UID != uid) || (gid >= 0 && n.GID != gid) {
		out = append(out, d(DriftOwner, fmt.Sprintf("owner is %s:%s, want %s:%s",
			platform.UserName(n.UID), platform.GroupName(n.GID), ownerName(uid, platform.UserName), ownerName(gid, platform.GroupName))))
	}
	return out
}

func looseDetail(loose []string, mode fs.FileMode) string {
	want := "SYSTEM and Administrators only"
	if mode&0o004 != 0 {
		want = "SYSTEM and Administrators, and Users to read"
	}
	return fmt.Sprintf("access list grants more than mode %04o means (%s): %s", mode, want, strings.Join(loose, "; "))
}

// appendModeOwner orders a file's mode and owner repairs so that no one
// gains access on the way: a mode that opens the file to its group is set
// after the new group, one that closes it before the group changes.
func appendModeOwner(out []Drift, mode, owner *Drift, have, want fs.FileMode) []Drift {
	widens := want&^have != 0
	if mode != nil && !widens {
		out = append(out, *mode)
	}
	if owner != nil {
		out = append(out, *owner)
	}
	if mode != nil && widens {
		out = append(out, *mode)
	}
	return out
}

// dirDrift judges a directory (the live one, ".", or the generation's)
// against the configured dir_mode and owner.
func dirDrift(o Observed, name string, d ObservedDir) []Drift {
	if !d.Exists {
		return nil
	}
	var mode, owner *Drift
	if o.DirMode != 0 && d.Mode != o.DirMode {
		mode = &Drift{Name: name, Kind: DriftDirMode, Detail: fmt.Sprintf("directory mode is %04o, want %04o (dir_mode)", d.Mode, o.DirMode)}
	}
	if uid, gid := o.Owner.UID, o.Owner.GID; (uid >= 0 && d.UID != uid) || (gid >= 0 && d.GID != gid) {
		// What is not configured stays as it is.
		if uid < 0 {
			uid = d.UID
		}
		if gid < 0 {
			gid = d.GID
		}
		owner = &Drift{Name: name, Kind: DriftDirOwner, Detail: fmt.Sprintf("directory owner is %s:%s, want %s:%s",
			platform.UserName(d.UID), platform.GroupName(d.GID), ownerName(uid, platform.UserName), ownerName(gid, platform.GroupName))}
	}
	return appendModeOwner(nil, mode, owner, d.Mode, o.DirMode)
}

// wantMode is the mode a generation file should have: the configured one,
// else the one it was installed with.
func wantMode(o Observed, name string, m Meta) fs.FileMode {
	if mode, ok := o.Modes[name]; ok {
		return mode
	}
	return m.Mode
}

// wantOwner is the owner a generation file should have: the configured
// one, else the one it was created with, else its directory's.
func wantOwner(o Observed, m Meta) (uid, gid int) {
	uid, gid = o.Owner.UID, o.Owner.GID
	if uid < 0 {
		uid = o.DirUID
		if m.UID != nil {
			uid = *m.UID
		}
	}
	if gid < 0 {
		gid = o.DirGID
		if m.GID != nil {
			gid = *m.GID
		}
	}
	return uid, gid
}

func ownerName(id int, name func(int) string) string {
	if id < 0 {
		return "*"
	}
	return name(id)
}

// Inspect reads the live directory without changing it. It returns
// ErrNoGeneration before the first install.
func (s *Store) Inspect() (Observed, error) {
	root, err := s.open(false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Observed{}, ErrNoGeneration
		}
		return Observed{}, err
	}
	defer root.Close()
	g, err := s.live(root)
	if err != nil {
		return Observed{}, err
	}
	return s.observe(root, g)
}

// observe reads what FindDrift needs about generation g.
func (s *Store) observe(root *liveDir, g Generation) (Observed, error) {
	o := Observed{Gen: g, Names: map[string]ObservedName{}, Files: map[string]ObservedFile{},
		DirUID: -1, DirGID: -1, Owner: s.Owner, Modes: s.Modes, DirMode: s.DirMode, CheckModes: platform.SupportsOwnership,
		Copies: root.copies}
	if t, err := s.dataTarget(root); err == nil {
		o.DataTarget = t
		if fi, err := root.Lstat(dataLink); err == nil {
			switch isLink := fi.Mode()&fs.ModeSymlink != 0; {
			case root.copies && isLink:
				o.DataForm = "is a link, and this directory keeps copies now (" + root.why + "); every name is made a copy"
			case !root.copies && !isLink:
				o.DataForm = "is a file, as the copy mode writes it, and this directory uses links now (" + root.why + "); every name is made a link"
			}
		}
	}
	access := platform.AccessListsKept()
	loose := func(name string, m Meta) []string {
		if !access {
			return nil
		}
		l, _ := platform.AccessDrift(filepath.Join(s.Dir, filepath.FromSlash(name)), s.copyMode(name, m))
		return l
	}
	if fi, err := root.Lstat(g.Name); err == nil {
		o.GenDir = observeDir(fi)
		if uid, gid, ok := platform.FileOwner(fi); ok {
			o.DirUID, o.DirGID = uid, gid
		}
	}
	if fi, err := root.Lstat("."); err == nil {
		o.LiveDir = observeDir(fi)
	}
	for name := range g.Files {
		if fi, err := root.Lstat(g.Name + "/" + name); err == nil && fi.Mode().IsRegular() {
			f := ObservedFile{Exists: true, Mode: fi.Mode().Perm(), UID: -1, GID: -1}
			if uid, gid, ok := platform.FileOwner(fi); ok {
				f.UID, f.GID = uid, gid
			}
			if fi.Size() <= pki.MaxFileSize {
				if b, err := root.ReadFile(g.Name + "/" + name); err == nil {
					f.SHA256 = hashOf(b)
				}
			}
			f.Loose = loose(g.Name+"/"+name, g.Files[name])
			o.Files[name] = f
		}
		fi, err := root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			o.Names[name] = ObservedName{Kind: "missing"}
		case err != nil:
			return o, fmt.Errorf("%s: %w", filepath.Join(s.Dir, name), err)
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := root.Readlink(name)
			if err != nil {
				return o, fmt.Errorf("%s: %w", filepath.Join(s.Dir, name), err)
			}
			o.Names[name] = ObservedName{Kind: "link", Target: t}
		case fi.Mode().IsRegular():
			n := ObservedName{Kind: "regular"}
			if root.copies {
				n.Mode, n.UID, n.GID = fi.Mode().Perm(), -1, -1
				if uid, gid, ok := platform.FileOwner(fi); ok {
					n.UID, n.GID = uid, gid
				}
				if fi.Size() <= pki.MaxFileSize {
					if b, err := root.ReadFile(name); err == nil {
						n.SHA256 = hashOf(b)
					}
				}
				n.Loose = loose(name, g.Files[name])
			}
			o.Names[name] = n
		default:
			o.Names[name] = ObservedName{Kind: "other"}
		}
	}
	return o, nil
}

func observeDir(fi fs.FileInfo) ObservedDir {
	d := ObservedDir{Exists: fi.IsDir(), Mode: fi.Mode().Perm(), UID: -1, GID: -1}
	if uid, gid, ok := platform.FileOwner(fi); ok {
		d.UID, d.GID = uid, gid
	}
	return d
}

// Repair restores the live directory to its live generation: the ..data
// link, each file's content (from its sealed copy), mode and owner, and
// each visible link. It changes no content a reader should see, so it
// needs no reload. It returns what it found, repaired or not; err says
// what it could not repair.
func (s *Store) Repair() ([]Drift, error) {
	root, unlock, err := s.openLocked(false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNoGeneration
		}
		return nil, err
	}
	defer unlock()
	// A copy-mode swap that failed halfway (a daemon holding a file open
	// on Windows) or was interrupted is finished first: judged against
	// ..data's generation, its new copies would read as drift and be put
	// back.
	if err := s.recoverJournal(root); err != nil {
		return nil, err
	}
	g, err := s.live(root)
	switch {
	case err == nil:
		if err := s.syncLiveRecord(root, g); err != nil {
			return nil, err
		}
	default:
		// ..data is gone or points at no generation: restore the one the
		// last swap made live, as ..live records it (after a rollback, not
		// the newest), else the newest, which an install makes live.
		if recorded, ok := s.recordedLive(root); ok {
			g = recorded
			break
		}
		newest, nerr := s.newestGeneration(root)
		if nerr != nil {
			return nil, err
		}
		g = newest
	}
	o, err := s.observe(root, g)
	if err != nil {
		return nil, err
	}
	drift := FindDrift(o)
	if len(drift) == 0 {
		return nil, nil
	}
	return drift, s.repair(root, o, drift, nil)
}

// newestGeneration is the generation to restore when ..data and its record
// ..live were removed (or predate the record): an install always makes the
// newest generation live.
func (s *Store) newestGeneration(root *liveDir) (Generation, error) {
	gens, err := s.generations(root)
	if err != nil {
		return Generation{}, err
	}
	for i := len(gens) - 1; i >= 0; i-- {
		if gens[i].Files != nil {
			return gens[i], nil
		}
	}
	return Generation{}, ErrNoGeneration
}

// repair fixes drift. Content is restored from the sealed copies, or from
// from (a file's installed bytes, by name) when given.
func (s *Store) repair(root *liveDir, o Observed, drift []Drift, from map[string][]byte) error {
	var errs []error
	names, copies := map[string]bool{}, map[string]bool{}
	for _, d := range drift {
		if d.Copy {
			copies[d.Name] = true
			continue
		}
		var err error
		want := o.Gen.Files[d.Name]
		path := o.Gen.Name + "/" + d.Name
		switch d.Kind {
		case DriftData:
			err = s.swap(root, o.Gen.Name)
		case DriftContent:
			want.Mode = wantMode(o, d.Name, want)
			err = s.restoreFile(root, o.Gen.Name, d.Name, want, from[d.Name])
		case DriftMode:
			err = root.Chmod(path, wantMode(o, d.Name, want))
		case DriftOwner:
			uid, gid := wantOwner(o, want)
			err = root.Lchown(path, uid, gid)
		case DriftDirMode:
			err = root.Chmod(d.Name, o.DirMode)
		case DriftDirOwner:
			err = root.Lchown(d.Name, o.Owner.UID, o.Owner.GID)
		case DriftAccess:
			err = platform.SecureFile(filepath.Join(s.Dir, filepath.FromSlash(path)), wantMode(o, d.Name, want))
		case DriftMissing, DriftRelinked, DriftReplaced:
			names[d.Name] = true
		case DriftForeign:
			err = errors.New(d.Detail)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(s.Dir, d.Name), err))
		}
	}
	if len(names) > 0 {
		var list []string
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		if err := s.linkAll(root, list, true); err != nil {
			errs = append(errs, err)
		}
	}
	// The copies last, from the generation's files as just restored.
	if len(copies) > 0 {
		if err := s.recopy(root, o.Gen, copies, from); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restoreFile writes a generation file again from data, when that is the
// installed content, else from its sealed copy, as a new file renamed over
// the damaged one: a reader sees the damaged content or the installed one,
// never a mix, and the key is 0600 from its first byte.
func (s *Store) restoreFile(root *liveDir, gen, name string, m Meta, data []byte) error {
	if data == nil || hashOf(data) != m.SHA256 {
		sealed, err := root.ReadFile(gen + "/" + sealedDir + "/" + name)
		if err != nil || hashOf(sealed) != m.SHA256 {
			return fmt.Errorf("no intact sealed copy to restore it from (generation made by an older certkeeper?); install the bundle again")
		}
		data = sealed
	}
	return s.replaceFile(root, gen+"/"+repairTmp+randomSuffix(), gen+"/"+name, data, m.Mode)
}

func (s *Store) removeRepairLeftovers(root *liveDir, gen string) error {
	d, err := root.Open(gen)
	if err != nil {
		return nil
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil
	}
	for _, n := range names {
		if strings.HasPrefix(n, repairTmp) {
			if err := root.Remove(gen + "/" + n); err != nil {
				return fmt.Errorf("%s: remove leftover %s: %w", s.Dir, n, err)
			}
		}
	}
	return nil
}
