package rotate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
}

// ObservedName is what a visible name holds.
type ObservedName struct {
	Kind   string // "link", "missing", "regular", "other"
	Target string // for a link
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
			out = append(out, Drift{name, DriftContent, "the generation's file is gone"})
		case f.SHA256 != want.SHA256:
			out = append(out, Drift{name, DriftContent, "content differs from what was installed (edited or copied over through the link)"})
		}
		if !f.Exists || !o.CheckModes {
			continue
		}
		var mode, owner *Drift
		if wm := wantMode(o, name, want); f.Mode != wm {
			mode = &Drift{name, DriftMode, fmt.Sprintf("mode is %04o, want %04o", f.Mode, wm)}
		}
		if uid, gid := wantOwner(o, want); (uid >= 0 && f.UID != uid) || (gid >= 0 && f.GID != gid) {
			owner = &Drift{name, DriftOwner, fmt.Sprintf("owner is %s:%s, want %s:%s",
				platform.UserName(f.UID), platform.GroupName(f.GID), ownerName(uid, platform.UserName), ownerName(gid, platform.GroupName))}
		}
		out = appendModeOwner(out, mode, owner, f.Mode, wantMode(o, name, want))
	}
	for _, name := range names {
		n := o.Names[name]
		switch n.Kind {
		case "link":
			switch rest, ok := strings.CutPrefix(n.Target, dataLink+"/"); {
			case ok && rest == name:
			case ok && CheckName(rest) == nil:
				out = append(out, Drift{name, DriftRelinked, fmt.Sprintf("links to %s instead of %s", n.Target, dataLink+"/"+name)})
			default:
				out = append(out, Drift{name, DriftForeign, fmt.Sprintf("is a symlink to %q that certkeeper did not make; move it away and certkeeper restores the link", n.Target)})
			}
		case "missing":
			out = append(out, Drift{name, DriftMissing, "missing (deleted or renamed)"})
		case "regular":
			out = append(out, Drift{name, DriftReplaced, "replaced by a regular file (kept under ..displaced/)"})
		default:
			out = append(out, Drift{name, DriftForeign, "is not a file or link; move it away and certkeeper restores the link"})
		}
	}
	return out
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
		mode = &Drift{name, DriftDirMode, fmt.Sprintf("directory mode is %04o, want %04o (dir_mode)", d.Mode, o.DirMode)}
	}
	if uid, gid := o.Owner.UID, o.Owner.GID; (uid >= 0 && d.UID != uid) || (gid >= 0 && d.GID != gid) {
		// What is not configured stays as it is.
		if uid < 0 {
			uid = d.UID
		}
		if gid < 0 {
			gid = d.GID
		}
		owner = &Drift{name, DriftDirOwner, fmt.Sprintf("directory owner is %s:%s, want %s:%s",
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
func (s *Store) observe(root *os.Root, g Generation) (Observed, error) {
	o := Observed{Gen: g, Names: map[string]ObservedName{}, Files: map[string]ObservedFile{},
		DirUID: -1, DirGID: -1, Owner: s.Owner, Modes: s.Modes, DirMode: s.DirMode, CheckModes: platform.SupportsOwnership}
	if t, err := root.Readlink(dataLink); err == nil {
		o.DataTarget = t
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
			o.Names[name] = ObservedName{Kind: "regular"}
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
func (s *Store) newestGeneration(root *os.Root) (Generation, error) {
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
func (s *Store) repair(root *os.Root, o Observed, drift []Drift, from map[string][]byte) error {
	var errs []error
	names := map[string]bool{}
	for _, d := range drift {
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
	return errors.Join(errs...)
}

// restoreFile writes a generation file again from data, when that is the
// installed content, else from its sealed copy, as a new file renamed over
// the damaged one: a reader sees the damaged content or the installed one,
// never a mix, and the key is 0600 from its first byte.
func (s *Store) restoreFile(root *os.Root, gen, name string, m Meta, data []byte) error {
	if data == nil || hashOf(data) != m.SHA256 {
		sealed, err := root.ReadFile(gen + "/" + sealedDir + "/" + name)
		if err != nil || hashOf(sealed) != m.SHA256 {
			return fmt.Errorf("no intact sealed copy to restore it from (generation made by an older certkeeper?); install the bundle again")
		}
		data = sealed
	}
	return s.replaceFile(root, gen+"/"+repairTmp+randomSuffix(), gen+"/"+name, data, m.Mode)
}

func (s *Store) removeRepairLeftovers(root *os.Root, gen string) error {
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
