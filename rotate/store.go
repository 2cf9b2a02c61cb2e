package rotate

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
)

// The live directory of a bundle, after the kubelet's atomic writer:
//
//	/etc/flocker/               0700
//	  ..gen-000007/             a complete generation: node.crt node.key cluster.crt ..meta.json
//	  ..gen-000006/             the previous one, kept for rollback
//	  ..data -> ..gen-000007    the live generation
//	  ..live                    "..gen-000007": which one ..data should point at
//	  node.crt -> ..data/node.crt
//	  node.key -> ..data/node.key
//	  cluster.crt -> ..data/cluster.crt
//
// A generation is written completely, fsynced and renamed into place before
// anything points at it; the swap is one rename of the ..data symlink. So at
// every instant, whatever kills the process, every visible name resolves
// into the same generation: a certificate never sits beside another
// generation's key.
const (
	dataLink = "..data"
	dataTmp  = "..data.tmp"
	// liveRecord names the live generation, written at every swap. It is
	// what drift repair restores ..data to when ..data is gone: after a
	// rollback the live generation is not the newest one.
	liveRecord = "..live"
	liveTmp    = "..live.tmp"
	genPrefix  = "..gen-"
	tmpPrefix  = "..tmp-"
	linkTmp    = "..link-"
	displaced  = "..displaced"
	metaFile   = "..meta.json"
	// sealedDir, inside each generation, holds a pristine copy of every
	// file (0600, in a 0700 directory). No visible name links into it, so
	// `cp`, `chmod` or an editor working through node.crt modify the
	// generation's file but never its sealed copy: drift repair restores
	// content from here, verified against ..meta.json.
	sealedDir = "..sealed"
	// repairTmp prefixes a file being written to restore a generation
	// file; it is renamed over the damaged one.
	repairTmp = "..repair-"
)

// File is one file of a generation.
type File struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// Generation describes one generation directory.
type Generation struct {
	Name      string    `json:"name"`
	Seq       int       `json:"seq"`
	Installed time.Time `json:"installed"`
	Source    string    `json:"source,omitempty"`
	// Replaced is the generation that was live when this one was
	// installed: what a rollback returns to, even when a generation that
	// was itself rolled back sits between them.
	Replaced string          `json:"replaced,omitempty"`
	Files    map[string]Meta `json:"files"`
}

// Meta is what a generation records of each file, so drift is detectable.
// UID and GID are the owner the file was created with; generations from
// before they were recorded lack them, and drift checks then compare with
// the generation directory's owner.
type Meta struct {
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
	UID    *int        `json:"uid,omitempty"`
	GID    *int        `json:"gid,omitempty"`
}

// Store manages the generations of one live directory.
type Store struct {
	Dir     string
	DirMode fs.FileMode
	Owner   platform.Owner
	// Modes is the configured mode of each file, by name: the truth drift
	// is measured against, so that a mode changed in the config reaches
	// the live files without an install. A name it lacks is judged
	// against the mode recorded at install.
	Modes map[string]fs.FileMode
	// Keep is how many generations besides the live one are kept for
	// rollback.
	Keep int
	Now  func() time.Time
	// Link is how the visible names reach the live generation: symbolic
	// links, or copies where links cannot be made (see LinkMode).
	Link LinkMode
	// crashAt, set by tests, is called at each step of a copy-mode swap
	// (see swapCopies): a test ends the process there to crash it.
	crashAt func(step string)
	// sleep waits between the tries of a rename over a held live file
	// (renameLive); nil is time.Sleep.
	sleep func(time.Duration)
}

// NewStore returns a store for a layout's directory.
func NewStore(l Layout, owner platform.Owner, keep int) *Store {
	return &Store{Dir: l.Dir, DirMode: l.DirMode, Owner: owner, Modes: l.Modes(), Keep: keep, Now: time.Now}
}

// ErrNoGeneration means nothing has been installed in the directory yet.
var ErrNoGeneration = errors.New("no generation installed")

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// open makes sure the directory exists, is a real directory this process
// may trust, and has the layout's mode and owner; then opens it as a root
// that no symlink can lead out of.
func (s *Store) open(create bool) (*liveDir, error) {
	fi, err := os.Lstat(s.Dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(s.Dir), 0o755); err != nil {
			return nil, fmt.Errorf("create parent of %s: %w", s.Dir, err)
		}
		if err := os.Mkdir(s.Dir, s.DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create %s: %w", s.Dir, err)
		}
		fi, err = os.Lstat(s.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Dir, err)
	}
	if err := s.checkDir(fi); err != nil {
		return nil, err
	}
	if create {
		if fi.Mode().Perm() != s.DirMode {
			if err := os.Chmod(s.Dir, s.DirMode); err != nil {
				return nil, fmt.Errorf("%s: set mode %04o: %w", s.Dir, s.DirMode, err)
			}
		}
		if err := s.chown(s.Dir, fi, os.Chown); err != nil {
			return nil, err
		}
		// Windows has no modes: an access list stands for the mode, and
		// everything created inside inherits it (a no-op on Unix).
		if err := platform.SecureDir(s.Dir, s.DirMode); err != nil {
			return nil, err
		}
	}
	r, err := os.OpenRoot(s.Dir)
	if err != nil {
		return nil, err
	}
	root := &liveDir{Root: r}
	root.copies, root.why = s.linkMode(root)
	return root, nil
}

// openLocked is open plus the directory's lock, so that the agent's
// repairs and an admin's install never interleave; unlock also closes root.
func (s *Store) openLocked(create bool) (*liveDir, func(), error) {
	root, err := s.open(create)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := platform.LockDir(s.Dir)
	if err != nil {
		root.Close()
		return nil, nil, err
	}
	return root, func() { unlock(); root.Close() }, nil
}

// checkDir refuses a directory someone else could have planted files in.
func (s *Store) checkDir(fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; certkeeper installs only into a real directory (replace the link with a directory)", s.Dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", s.Dir)
	}
	if !platform.SupportsOwnership {
		return nil
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o), so its contents can not be trusted; check them, then `chmod %04o %s`",
			s.Dir, fi.Mode().Perm(), s.DirMode, s.Dir)
	}
	uid, _, ok := platform.FileOwner(fi)
	if ok && uid != platform.Euid() && uid != s.Owner.UID {
		return fmt.Errorf("%s is owned by %s, not by %s (this process) or the bundle's owner; check it, then chown it",
			s.Dir, platform.UserName(uid), platform.UserName(platform.Euid()))
	}
	return nil
}

func (s *Store) chown(name string, fi fs.FileInfo, chown func(string, int, int) error) error {
	if s.Owner.UID < 0 && s.Owner.GID < 0 {
		return nil
	}
	// fi is nil for what this process just created: set the owner.
	if fi != nil {
		if uid, gid, ok := platform.FileOwner(fi); ok && (s.Owner.UID < 0 || uid == s.Owner.UID) && (s.Owner.GID < 0 || gid == s.Owner.GID) {
			return nil
		}
	}
	if err := chown(name, s.Owner.UID, s.Owner.GID); err != nil {
		return fmt.Errorf("%s: set owner %s:%s: %w (run as root, or remove owner/group from the bundle)", name, s.Owner.User, s.Owner.Group, err)
	}
	return nil
}

// Installed says what Store.Install did.
type Installed struct {
	// Generation is the live generation: the new one, or the one that
	// already held these files.
	Generation Generation
	// Changed is false when the live generation already held these files:
	// nothing new for a daemon, so nothing to reload.
	Changed bool
	// Repaired is what an install of unchanged files found drifted in the
	// live directory and restored (content, mode, owner, links, sealed
	// copies): what the daemons were given, so still nothing to reload.
	Repaired []Drift
}

// Install writes files as a new generation and makes it live. When the live
// generation already holds exactly these files, no generation is made and
// Changed is false; the live directory is then restored to them (see
// Installed.Repaired), so installing a bundle again repairs it.
func (s *Store) Install(files []File, source string) (Installed, error) {
	return s.InstallDecided(source, func() ([]File, error) { return files, nil }, nil)
}

// InstallDecided is Install with the decision taken under the store's lock:
// decide runs after the lock is taken and an interrupted install is
// recovered, so what it reads of the live generation (Live, HandCopied)
// is still live when its files are swapped in; no other installer can
// change it in between. beforeSwap, when set, runs under the same lock
// after the new generation is staged and before the swap makes it live
// (the agent records there, durably, that its reload is owed); its error
// stops the install with nothing swapped.
func (s *Store) InstallDecided(source string, decide func() ([]File, error), beforeSwap func(Generation) error) (Installed, error) {
	root, unlock, err := s.openLocked(true)
	if err != nil {
		return Installed{}, err
	}
	defer unlock()
	if !root.copies {
		if err := platform.CheckSymlinks(root.Root); err != nil {
			return Installed{}, fmt.Errorf("%s: %w (or set link_mode = \"copy\" for the bundle)", s.Dir, err)
		}
	}
	if err := s.recover(root); err != nil {
		return Installed{}, err
	}
	files, err := decide()
	if err != nil {
		return Installed{}, err
	}
	if len(files) == 0 {
		return Installed{}, errors.New("nothing to install")
	}
	for _, f := range files {
		if err := CheckName(f.Name); err != nil {
			return Installed{}, err
		}
	}
	live, liveErr := s.live(root)
	if liveErr != nil && !errors.Is(liveErr, ErrNoGeneration) {
		return Installed{}, liveErr
	}
	if err := s.checkVisible(root, files); err != nil {
		return Installed{}, err
	}
	if errors.Is(liveErr, ErrNoGeneration) {
		if err := s.adopt(root, files); err != nil {
			return Installed{}, err
		}
		live, liveErr = s.live(root)
	}
	if liveErr == nil && sameFiles(live, files) {
		repaired, err := s.restore(root, live, files)
		return Installed{Generation: live, Repaired: repaired}, err
	}
	replaced := ""
	if liveErr == nil {
		replaced = live.Name
	}
	gen, err := s.stage(root, files, source, replaced)
	if err != nil {
		return Installed{Generation: gen}, err
	}
	// Links first: a name that is new in this generation dangles (reads as
	// missing) until the swap makes all of them appear together. (Copies
	// are the swap's own work.)
	if !root.copies {
		if err := s.linkAll(root, names(files), true); err != nil {
			return Installed{Generation: gen}, err
		}
	}
	if beforeSwap != nil {
		if err := beforeSwap(gen); err != nil {
			return Installed{Generation: gen}, err
		}
	}
	if err := s.swap(root, gen.Name); err != nil {
		return Installed{Generation: gen}, err
	}
	if err := s.prune(root); err != nil {
		return Installed{Generation: gen, Changed: true}, err
	}
	return Installed{Generation: gen, Changed: true}, nil
}

// restore makes the live directory hold what the live generation recorded,
// as drift repair does, but from files, the bundle being installed again
// (byte for byte the generation's: sameFiles). So it works where no sealed
// copy is left, and writes missing or damaged sealed copies again for the
// repairs to come. It returns what it found and restored.
func (s *Store) restore(root *liveDir, live Generation, files []File) ([]Drift, error) {
	data := map[string][]byte{}
	for _, f := range files {
		data[f.Name] = f.Data
	}
	o, err := s.observe(root, live)
	if err != nil {
		return nil, err
	}
	drift := FindDrift(o)
	if err := s.repair(root, o, drift, data); err != nil {
		return drift, err
	}
	resealed, err := s.reseal(root, live, data)
	drift = append(drift, resealed...)
	if err != nil {
		return drift, err
	}
	if root.copies {
		return drift, nil
	}
	// The links' owner, which FindDrift does not judge.
	return drift, s.linkAll(root, names(files), true)
}

// reseal writes again each sealed copy of generation g that is missing or
// no longer matches ..meta.json, from data when it holds the recorded
// content.
func (s *Store) reseal(root *liveDir, g Generation, data map[string][]byte) ([]Drift, error) {
	var out []Drift
	sealed := g.Name + "/" + sealedDir
	for _, name := range sortedNames(g.Files) {
		m := g.Files[name]
		if b, err := root.ReadFile(sealed + "/" + name); err == nil && hashOf(b) == m.SHA256 {
			continue
		}
		d, ok := data[name]
		if !ok || hashOf(d) != m.SHA256 {
			continue
		}
		if err := root.Mkdir(sealed, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return out, fmt.Errorf("%s: %w", filepath.Join(s.Dir, sealed), err)
		}
		// Written beside the generation's files, where recover finds a
		// leftover, then renamed into place.
		tmp := g.Name + "/" + repairTmp + randomSuffix()
		if err := s.replaceFile(root, tmp, sealed+"/"+name, d, 0o600); err != nil {
			return out, err
		}
		out = append(out, Drift{Name: name, Kind: DriftContent, Detail: "its sealed copy (what drift repair restores from) was missing or damaged; written again"})
	}
	return out, nil
}

func names(files []File) []string {
	n := make([]string, len(files))
	for i, f := range files {
		n[i] = f.Name
	}
	return n
}

func sameFiles(g Generation, files []File) bool {
	if len(g.Files) != len(files) {
		return false
	}
	for _, f := range files {
		m, ok := g.Files[f.Name]
		if !ok || m.SHA256 != hashOf(f.Data) || m.Mode != f.Mode {
			return false
		}
	}
	return true
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// What a visible name holds.
type visible int

const (
	visMissing       visible = iota
	visOurs                  // a link to ..data/<name>
	visOursElsewhere         // a link into ..data, but to another name (a renamed link)
	visRegular               // a regular file (hand-copied, or drift)
)

// classifyVisible says what a visible name holds, refusing what certkeeper
// did not put there and must not overwrite: a symlink elsewhere (it could
// lead a write anywhere), a directory, a device.
func (s *Store) classifyVisible(root *liveDir, name string) (visible, fs.FileInfo, error) {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return visMissing, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", filepath.Join(s.Dir, name), err)
	}
	switch {
	case fi.Mode().IsRegular():
		return visRegular, fi, nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(name)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", filepath.Join(s.Dir, name), err)
		}
		if target == dataLink+"/"+name {
			return visOurs, fi, nil
		}
		if rest, ok := strings.CutPrefix(target, dataLink+"/"); ok && CheckName(rest) == nil {
			return visOursElsewhere, fi, nil
		}
		return 0, nil, fmt.Errorf("%s is a symlink to %q that certkeeper did not make; refusing to write through or replace it (check who made it, move it away, and run again)",
			filepath.Join(s.Dir, name), target)
	}
	return 0, nil, fmt.Errorf("%s is a %s, not a file; move it away and run again", filepath.Join(s.Dir, name), fi.Mode().Type())
}

// checkVisible refuses before anything is written when a name holds
// something certkeeper must not replace.
func (s *Store) checkVisible(root *liveDir, files []File) error {
	for _, f := range files {
		if _, _, err := s.classifyVisible(root, f.Name); err != nil {
			return err
		}
	}
	return nil
}

// adopt takes the regular files a directory holds before certkeeper's first
// install (copied there by hand, as the guides say) into a generation of
// their own, and replaces each by a link to the same content. Each step
// keeps what readers see unchanged, so the swap that follows changes all
// names at once instead of one file after another.
func (s *Store) adopt(root *liveDir, files []File) error {
	var existing []File
	for _, f := range files {
		data, ok, err := s.readRegular(root, f.Name)
		if err != nil {
			return err
		}
		if ok {
			existing = append(existing, File{Name: f.Name, Data: data, Mode: f.Mode})
		}
	}
	if len(existing) == 0 {
		return nil
	}
	gen, err := s.stage(root, existing, "adopted: files present before certkeeper's first install", "")
	if err != nil {
		return err
	}
	if err := s.swap(root, gen.Name); err != nil {
		return err
	}
	if root.copies {
		// The swap replaced each file by a copy of the same content, now
		// with the layout's mode.
		return nil
	}
	// The adopted generation holds the files' content; no need to keep
	// the originals under ..displaced as well.
	return s.linkAll(root, names(existing), false)
}

// readRegular reads a regular file at a visible name: what adopt takes in.
// ok is false when the name holds no regular file.
func (s *Store) readRegular(root *liveDir, name string) (data []byte, ok bool, err error) {
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false, nil
	}
	if fi.Size() > pki.MaxFileSize {
		return nil, false, fmt.Errorf("%s: existing file is larger than 1 MiB; move it away and install again", filepath.Join(s.Dir, name))
	}
	data, err = root.ReadFile(name)
	if err != nil {
		return nil, false, fmt.Errorf("read existing %s: %w", filepath.Join(s.Dir, name), err)
	}
	return data, true, nil
}

// HandCopied returns the regular files at these names in a directory where
// nothing is installed yet (copied there by hand, as the guides say): what
// the first install adopts as a generation of its own, so until then the
// live bundle. It writes nothing. With a live generation, or no directory,
// it returns nothing.
func (s *Store) HandCopied(names []string) (map[string][]byte, error) {
	root, err := s.open(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if _, err := s.live(root); !errors.Is(err, ErrNoGeneration) {
		return nil, err
	}
	files := map[string][]byte{}
	for _, name := range names {
		if CheckName(name) != nil {
			continue
		}
		data, ok, err := s.readRegular(root, name)
		if err != nil {
			return nil, err
		}
		if ok {
			files[name] = data
		}
	}
	return files, nil
}

// stage writes a complete generation under a temporary name and renames it
// into place. Every file is created with its final mode and owner before
// its first byte, so a key is never readable by others, not even briefly.
func (s *Store) stage(root *liveDir, files []File, source, replaced string) (Generation, error) {
	seq, err := s.nextSeq(root)
	if err != nil {
		return Generation{}, err
	}
	tmp := tmpPrefix + strconv.Itoa(seq) + "-" + randomSuffix()
	if err := root.Mkdir(tmp, 0o700); err != nil {
		return Generation{}, fmt.Errorf("%s: create staging directory: %w", s.Dir, err)
	}
	fail := func(err error) (Generation, error) {
		_ = root.RemoveAll(tmp)
		return Generation{}, err
	}
	gen := Generation{Name: fmt.Sprintf("%s%06d", genPrefix, seq), Seq: seq, Installed: s.now().UTC(), Source: source, Replaced: replaced, Files: map[string]Meta{}}
	if err := root.Mkdir(tmp+"/"+sealedDir, 0o700); err != nil {
		return fail(fmt.Errorf("%s: %w", s.Dir, err))
	}
	for _, f := range files {
		if err := s.writeFile(root, tmp+"/"+f.Name, f.Data, f.Mode); err != nil {
			return fail(err)
		}
		if err := s.writeFile(root, tmp+"/"+sealedDir+"/"+f.Name, f.Data, 0o600); err != nil {
			return fail(err)
		}
		m := Meta{SHA256: hashOf(f.Data), Mode: f.Mode}
		if fi, err := root.Lstat(tmp + "/" + f.Name); err == nil {
			if uid, gid, ok := platform.FileOwner(fi); ok {
				m.UID, m.GID = &uid, &gid
			}
		}
		gen.Files[f.Name] = m
	}
	if err := syncDir(root, tmp+"/"+sealedDir); err != nil {
		return fail(err)
	}
	meta, _ := json.MarshalIndent(gen, "", "  ")
	if err := s.writeFile(root, tmp+"/"+metaFile, meta, 0o600); err != nil {
		return fail(err)
	}
	if err := syncDir(root, tmp); err != nil {
		return fail(err)
	}
	if err := root.Chmod(tmp, s.DirMode); err != nil {
		return fail(fmt.Errorf("%s: %w", s.Dir, err))
	}
	if err := s.chown(tmp, nil, root.Lchown); err != nil {
		return fail(err)
	}
	if err := root.Rename(tmp, gen.Name); err != nil {
		return fail(fmt.Errorf("%s: rename staged generation: %w", s.Dir, err))
	}
	return gen, syncDir(root, ".")
}

func (s *Store) writeFile(root *liveDir, name string, data []byte, mode fs.FileMode) error {
	return s.ownerHint(platform.WriteNewFile(root.Root, name, data, mode, s.Owner, true))
}

// replaceFile writes name atomically (platform.AtomicWrite) through tmp, a
// name of this store's own that recover removes when a crash leaves it.
func (s *Store) replaceFile(root *liveDir, tmp, name string, data []byte, mode fs.FileMode) error {
	w := platform.AtomicWrite{Mode: mode, Owner: s.Owner, Temp: tmp}
	return s.ownerHint(w.WriteFileIn(root.Root, name, data))
}

func (s *Store) ownerHint(err error) error {
	if errors.Is(err, platform.ErrSetOwner) {
		return fmt.Errorf("%w (run as root, or remove owner/group from the bundle)", err)
	}
	return err
}

func syncDir(root *liveDir, name string) error { return platform.SyncDirIn(root.Root, name) }

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// swap points ..data at a generation with a single rename (in the copy
// mode: see swapCopies). The record of
// the live generation is written first: if the rename then fails, or the
// process dies before it, ..data still names the live generation and the
// next recover or repair puts the record right.
func (s *Store) swap(root *liveDir, gen string) error {
	if err := s.recordLive(root, gen); err != nil {
		return err
	}
	if root.copies {
		return s.swapCopies(root, gen)
	}
	_ = root.Remove(dataTmp)
	if err := root.Symlink(gen, dataTmp); err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	if err := root.Rename(dataTmp, dataLink); err != nil {
		return fmt.Errorf("%s: swap to %s: %w", s.Dir, gen, err)
	}
	return syncDir(root, ".")
}

// recordLive writes the name of the live generation to ..live, atomically.
func (s *Store) recordLive(root *liveDir, gen string) error {
	_ = root.Remove(liveTmp)
	return s.replaceFile(root, liveTmp, liveRecord, []byte(gen+"\n"), 0o600)
}

// syncLiveRecord makes ..live name g, the generation ..data points at,
// when an interrupted swap or an older certkeeper left it otherwise.
func (s *Store) syncLiveRecord(root *liveDir, g Generation) error {
	if b, err := root.ReadFile(liveRecord); err == nil && strings.TrimSpace(string(b)) == g.Name {
		return nil
	}
	if err := s.recordLive(root, g.Name); err != nil {
		return err
	}
	return syncDir(root, ".")
}

// recordedLive is the generation ..live names, if it is still there and
// whole.
func (s *Store) recordedLive(root *liveDir) (Generation, bool) {
	b, err := root.ReadFile(liveRecord)
	if err != nil {
		return Generation{}, false
	}
	name := strings.TrimSpace(string(b))
	if _, ok := genSeq(name); !ok {
		return Generation{}, false
	}
	gens, err := s.generations(root)
	if err != nil {
		return Generation{}, false
	}
	for _, g := range gens {
		if g.Name == name && g.Files != nil {
			return g, true
		}
	}
	return Generation{}, false
}

// linkAll makes every visible name a link into ..data. A regular file found
// in its place (a drifted copy) is kept under ..displaced/ rather than lost,
// when keep is set.
func (s *Store) linkAll(root *liveDir, files []string, keep bool) error {
	for _, name := range files {
		kind, fi, err := s.classifyVisible(root, name)
		if err != nil {
			return err
		}
		if kind == visOurs {
			if err := s.chown(name, fi, root.Lchown); err != nil {
				return err
			}
			continue
		}
		tmp := linkTmp + randomSuffix()
		if err := root.Symlink(dataLink+"/"+name, tmp); err != nil {
			return fmt.Errorf("%s: %w", s.Dir, err)
		}
		if err := s.chown(tmp, nil, root.Lchown); err != nil {
			_ = root.Remove(tmp)
			return err
		}
		if keep && kind == visRegular {
			if err := s.displace(root, name); err != nil {
				_ = root.Remove(tmp)
				return err
			}
		}
		if err := root.Rename(tmp, name); err != nil {
			_ = root.Remove(tmp)
			return fmt.Errorf("%s: %w", filepath.Join(s.Dir, name), err)
		}
	}
	return syncDir(root, ".")
}

// displace keeps a hard link to a regular file that is about to be replaced
// by certkeeper's link, so a hand-placed file is never silently lost.
func (s *Store) displace(root *liveDir, name string) error {
	if err := root.Mkdir(displaced, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	kept, err := displacedCopies(root)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	seq := 1
	if len(kept) > 0 {
		seq = kept[len(kept)-1].seq + 1
	}
	dst := displaced + "/" + name + "." + s.now().UTC().Format("20060102T150405.000000000") + "." + strconv.Itoa(seq)
	if err := root.Link(name, dst); err != nil {
		return fmt.Errorf("%s: keep a copy before replacing it: %w", filepath.Join(s.Dir, name), err)
	}
	// Whatever it was, it may be a key: only the owner reads it from here.
	if err := root.Chmod(dst, 0o600); err != nil {
		return err
	}
	// Each copy may be a key: keep only the newest few, by the sequence
	// at the end of their names (not by the clock, which can go back).
	for len(kept) >= keepDisplaced {
		_ = root.Remove(displaced + "/" + kept[0].name)
		kept = kept[1:]
	}
	return nil
}

// keepDisplaced is how many displaced copies are kept: a link replaced by
// a regular file 200 times left 200 key copies.
const keepDisplaced = 8

type displacedCopy struct {
	name string
	seq  int
}

// displacedCopies lists ..displaced/, oldest first: by the sequence that
// ends each name, a copy of an older version (none) first.
func displacedCopies(root *liveDir) ([]displacedCopy, error) {
	d, err := root.Open(displaced)
	if err != nil {
		return nil, err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var out []displacedCopy
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		c := displacedCopy{name: e.Name()}
		if i := strings.LastIndexByte(e.Name(), '.'); i >= 0 {
			if n, err := strconv.Atoi(e.Name()[i+1:]); err == nil && n > 0 && n < 1<<40 {
				c.seq = n
			}
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].seq != out[j].seq {
			return out[i].seq < out[j].seq
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// Generations lists the generation directories, oldest first.
func (s *Store) generations(root *liveDir) ([]Generation, error) {
	d, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Dir, err)
	}
	var gens []Generation
	for _, e := range entries {
		seq, ok := genSeq(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		g := Generation{Name: e.Name(), Seq: seq}
		if b, err := root.ReadFile(e.Name() + "/" + metaFile); err == nil {
			_ = json.Unmarshal(b, &g)
			g.Name, g.Seq = e.Name(), seq
		}
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].Seq < gens[j].Seq })
	return gens, nil
}

func genSeq(name string) (int, bool) {
	if !strings.HasPrefix(name, genPrefix) {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(name, genPrefix))
	return n, err == nil && n > 0
}

func (s *Store) nextSeq(root *liveDir) (int, error) {
	gens, err := s.generations(root)
	if err != nil {
		return 0, err
	}
	if len(gens) == 0 {
		return 1, nil
	}
	return gens[len(gens)-1].Seq + 1, nil
}

// live returns the generation ..data points at.
func (s *Store) live(root *liveDir) (Generation, error) {
	target, err := s.dataTarget(root)
	if errors.Is(err, fs.ErrNotExist) {
		return Generation{}, ErrNoGeneration
	}
	if err != nil {
		return Generation{}, fmt.Errorf("%s: %w", filepath.Join(s.Dir, dataLink), err)
	}
	seq, ok := genSeq(target)
	if !ok {
		return Generation{}, fmt.Errorf("%s points at %q, which is not a generation; remove it and install again", filepath.Join(s.Dir, dataLink), target)
	}
	g := Generation{Name: target, Seq: seq}
	b, err := root.ReadFile(target + "/" + metaFile)
	if err != nil {
		return g, fmt.Errorf("live generation %s: %w", filepath.Join(s.Dir, target), err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, fmt.Errorf("live generation %s: %s is damaged: %w", filepath.Join(s.Dir, target), metaFile, err)
	}
	g.Name, g.Seq = target, seq
	return g, nil
}

// Live returns the live generation and its files' contents.
func (s *Store) Live() (Generation, map[string][]byte, error) {
	root, err := s.open(false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Generation{}, nil, ErrNoGeneration
		}
		return Generation{}, nil, err
	}
	defer root.Close()
	g, err := s.live(root)
	if err != nil {
		return g, nil, err
	}
	files, err := s.readGeneration(root, g)
	return g, files, err
}

// Generations lists the kept generations, oldest first.
func (s *Store) Generations() ([]Generation, error) {
	root, err := s.open(false)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return s.generations(root)
}

// Recover finishes or undoes whatever an interrupted install left behind:
// staging directories and temporary links are removed (nothing points at
// them), and every name of the live generation is linked again. The swap
// itself is a single rename, so there is no half-swapped state to repair;
// in the copy mode it is not, and a swap its journal shows interrupted is
// finished (see swapCopies).
func (s *Store) Recover() error {
	root, unlock, err := s.openLocked(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	return s.recover(root)
}

func (s *Store) recover(root *liveDir) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, tmpPrefix) || strings.HasPrefix(n, linkTmp) || n == dataTmp || n == liveTmp ||
			strings.HasPrefix(n, copyTmp) || n == swapTmp || strings.HasPrefix(n, aclProbe) {
			if err := root.RemoveAll(n); err != nil {
				return fmt.Errorf("%s: remove leftover %s: %w", s.Dir, n, err)
			}
		}
		if _, ok := genSeq(n); ok && e.IsDir() {
			if err := s.removeRepairLeftovers(root, n); err != nil {
				return err
			}
		}
	}
	if err := s.recoverJournal(root); err != nil {
		return err
	}
	live, err := s.live(root)
	if errors.Is(err, ErrNoGeneration) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.syncLiveRecord(root, live); err != nil {
		return err
	}
	// A directory whose mode changed (link_mode, or the privilege to make
	// links) changes at its next swap; this is one, to the live generation.
	fi, err := root.Lstat(dataLink)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(s.Dir, dataLink), err)
	}
	if isLink := fi.Mode()&fs.ModeSymlink != 0; root.copies == isLink {
		if err := s.swap(root, live.Name); err != nil {
			return err
		}
	}
	if root.copies {
		return s.placeMissing(root, live)
	}
	var want []string
	for name := range live.Files {
		want = append(want, name)
	}
	sort.Strings(want)
	return s.linkAll(root, want, true)
}

// Rollback makes the generation the live one replaced live again (see
// Previous).
func (s *Store) Rollback() (from, to Generation, err error) {
	return s.RollbackDecided(nil, nil)
}

// RollbackDecided is Rollback with its checks under the store's lock:
// check, when set, judges the generation to roll back to (its files as
// installed) and may refuse it; beforeSwap runs after it and before the
// swap, as in InstallDecided.
func (s *Store) RollbackDecided(check func(to Generation, files map[string][]byte) error, beforeSwap func(from, to Generation) error) (from, to Generation, err error) {
	root, unlock, err := s.openLocked(false)
	if err != nil {
		return from, to, err
	}
	defer unlock()
	if err := s.recover(root); err != nil {
		return from, to, err
	}
	from, err = s.live(root)
	if err != nil {
		return from, to, err
	}
	to, err = s.previous(root, from)
	if err != nil {
		return from, to, err
	}
	if check != nil {
		files, err := s.readGeneration(root, to)
		if err != nil {
			return from, to, err
		}
		if err := check(to, files); err != nil {
			return from, to, err
		}
	}
	// A kept generation may have been edited while it was live: make its
	// files what was installed before they become visible again.
	o, err := s.observe(root, to)
	if err != nil {
		return from, to, err
	}
	o.DataTarget = to.Name
	var fileDrift []Drift
	for _, d := range FindDrift(o) {
		if !d.Copy && (d.Kind == DriftContent || d.Kind == DriftMode || d.Kind == DriftOwner || d.Kind == DriftAccess) || (d.Kind == DriftDirMode || d.Kind == DriftDirOwner) && d.Name != "." {
			fileDrift = append(fileDrift, d)
		}
	}
	if err := s.repair(root, o, fileDrift, nil); err != nil {
		return from, to, err
	}
	if !root.copies {
		if err := s.linkAll(root, sortedNames(to.Files), true); err != nil {
			return from, to, err
		}
	}
	if beforeSwap != nil {
		if err := beforeSwap(from, to); err != nil {
			return from, to, err
		}
	}
	return from, to, s.swap(root, to.Name)
}

// Previous returns the generation a rollback would make live: the one the
// live generation replaced. When that one is gone, it refuses rather than
// pick another: an older generation by number may be one the admin
// already rolled away from. Only a generation that records nothing it
// replaced (the first, or one made before certkeeper recorded it) falls
// back to the newest older one.
func (s *Store) Previous() (Generation, error) {
	root, err := s.open(false)
	if err != nil {
		return Generation{}, err
	}
	defer root.Close()
	live, err := s.live(root)
	if err != nil {
		return Generation{}, err
	}
	return s.previous(root, live)
}

func (s *Store) previous(root *liveDir, live Generation) (Generation, error) {
	gens, err := s.generations(root)
	if err != nil {
		return Generation{}, err
	}
	if live.Replaced != "" {
		for _, g := range gens {
			if g.Name == live.Replaced && g.Files != nil {
				return g, nil
			}
		}
		return Generation{}, fmt.Errorf("%s: no generation older than %s to roll back to: %s, which it replaced, is no longer kept",
			s.Dir, live.Name, live.Replaced)
	}
	for i := len(gens) - 1; i >= 0; i-- {
		if gens[i].Seq < live.Seq && gens[i].Files != nil {
			return gens[i], nil
		}
	}
	return Generation{}, fmt.Errorf("%s: no generation older than %s to roll back to", s.Dir, live.Name)
}

// ReadGeneration returns the files of a kept generation.
func (s *Store) ReadGeneration(g Generation) (map[string][]byte, error) {
	root, err := s.open(false)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return s.readGeneration(root, g)
}

// readGeneration returns a generation's files as they were installed: from
// the sealed copies, or from the files themselves while they still match
// ..meta.json. Content edited through a visible link is never returned as
// if it were the installed bundle.
func (s *Store) readGeneration(root *liveDir, g Generation) (map[string][]byte, error) {
	files := map[string][]byte{}
	for name, m := range g.Files {
		b, err := s.pristine(root, g.Name, name, m)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

func (s *Store) pristine(root *liveDir, gen, name string, m Meta) ([]byte, error) {
	if b, err := root.ReadFile(gen + "/" + sealedDir + "/" + name); err == nil && hashOf(b) == m.SHA256 {
		return b, nil
	}
	b, err := root.ReadFile(gen + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(s.Dir, gen, name), err)
	}
	if hashOf(b) != m.SHA256 {
		return nil, fmt.Errorf("%s: content differs from what was installed, and no intact sealed copy is left; install the bundle again",
			filepath.Join(s.Dir, gen, name))
	}
	return b, nil
}

func sortedNames(m map[string]Meta) []string {
	n := make([]string, 0, len(m))
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// prune keeps the live generation and Keep others, and removes the rest.
// The others are first the chain rollbacks walk (what the live generation
// replaced, what that one replaced, …), then the newest by number. Newest
// alone is not enough: after a rollback, the newest generation is the one
// rolled away from, and what the next install replaces is older.
func (s *Store) prune(root *liveDir) error {
	live, err := s.live(root)
	if err != nil {
		return err
	}
	gens, err := s.generations(root)
	if err != nil {
		return err
	}
	byName := map[string]Generation{}
	for _, g := range gens {
		byName[g.Name] = g
	}
	keep := map[string]bool{live.Name: true}
	kept := 0
	for name := live.Replaced; name != "" && kept < s.Keep; {
		g, ok := byName[name]
		if !ok || keep[name] {
			break
		}
		keep[name] = true
		kept++
		name = g.Replaced
	}
	for i := len(gens) - 1; i >= 0 && kept < s.Keep; i-- {
		if !keep[gens[i].Name] {
			keep[gens[i].Name] = true
			kept++
		}
	}
	for _, g := range gens {
		if keep[g.Name] {
			continue
		}
		if err := root.RemoveAll(g.Name); err != nil {
			return fmt.Errorf("%s: prune %s: %w", s.Dir, g.Name, err)
		}
	}
	return nil
}
