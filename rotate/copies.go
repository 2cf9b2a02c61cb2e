package rotate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/certkeeper/certkeeper/platform"
)

// LinkMode is how a store's visible names reach the live generation.
type LinkMode string

const (
	// LinkAuto is symlinks on Unix, always. On Windows it is the mode the
	// directory is already in (..data a link, or a file), and for a new
	// directory symlinks where this process can make them, copies where
	// it cannot (no SeCreateSymbolicLinkPrivilege, or Wine 8).
	LinkAuto LinkMode = ""
	// LinkSymlink: each visible name is a symbolic link into ..data, a
	// link to the live generation; the swap is one rename of ..data.
	LinkSymlink LinkMode = "symlink"
	// LinkCopy: each visible name is a regular file, a copy of the live
	// generation's file; the swap is journaled (see swapCopies).
	LinkCopy LinkMode = "copy"
)

// ParseLinkMode reads the config's link_mode: "symlink", "copy", or
// "auto" (or empty).
func ParseLinkMode(s string) (LinkMode, error) {
	switch s {
	case "", "auto":
		return LinkAuto, nil
	case string(LinkSymlink), string(LinkCopy):
		return LinkMode(s), nil
	}
	return "", fmt.Errorf("link_mode %q: want \"symlink\", \"copy\" or \"auto\"", s)
}

// The copy mode. On Windows an agent without SeCreateSymbolicLinkPrivilege
// cannot make the links the store is made of (and Wine 8 makes none at
// all), so there the live directory holds copies:
//
//	C:\ProgramData\certkeeper\flocker\
//	  ..gen-000007\      a complete generation, as in the link mode
//	  ..gen-000006\      the previous one, kept for rollback
//	  ..data             a file: "..gen-000007", the live generation
//	  ..live             the same name, the record drift repair restores ..data from
//	  ..swap             only during a swap: the generation being made live
//	  node.crt           a copy of ..gen-000007\node.crt
//	  node.key           a copy of ..gen-000007\node.key
//
// The store owns every name starting with "..": ..data, ..live and ..swap
// are written only by it, each with AtomicWrite (a whole file or none).
// The visible names are the daemon's to read and the admin's to look at;
// what anyone changes there is drift, restored from the live generation.
//
// A swap to generation G: G is staged whole and fsynced first (as in the
// link mode); then the journal ..swap is written naming G; then each
// visible file is replaced by a fresh copy of G's, renamed over it
// (os.Root.Rename: on Windows a FileRenameInformationEx with
// REPLACE_IF_EXISTS and POSIX semantics; a file another process holds open
// without sharing delete blocks it, see held.go); then ..data is made to name G;
// then ..swap is removed. Recovery, before anything else the store does
// (Recover, and the start of every install, rollback and repair), finishes
// a swap whose journal it finds: G is whole, so it copies G's files again
// and points ..data at it. So after a crash the live set is always one
// whole generation, once recovery has run.
//
// What a reader sees during a swap: each file is old or new, whole, never
// a mix within a file; but between two renames node.crt may be new while
// node.key is still old. The link mode has no such instant. The copy mode
// relies on what the pipeline guarantees: a daemon is reloaded only after
// the swap is complete (and, after a crash, after recovery completed it),
// so a daemon reads the set only when it is whole. A daemon that re-reads
// its files on its own (etcd reads them at each handshake) can see the
// mixed instant, for the few milliseconds of a swap, as it could with any
// tool that copies files into place.
const (
	swapJournal = "..swap"
	swapTmp     = "..swap.tmp"
	// copyTmp prefixes a fresh copy being written before it is renamed
	// over a visible name.
	copyTmp = "..copy-"
	// aclProbe prefixes platform.AccessListsKept's probe, removed should
	// a crash leave it.
	aclProbe = "..acl-probe-"
)

// liveDir is an open live directory and the mode its names are in.
type liveDir struct {
	*os.Root
	copies bool
	// why says how the mode was chosen, for logs and status.
	why string
}

// linkMode decides how this directory's names reach the live generation
// (see LinkMode), and says why.
func (s *Store) linkMode(root *liveDir) (copies bool, why string) {
	switch s.Link {
	case LinkCopy:
		return true, "copies (link_mode = \"copy\")"
	case LinkSymlink:
		return false, "symbolic links (link_mode = \"symlink\")"
	}
	if runtime.GOOS != "windows" {
		return false, "symbolic links"
	}
	if fi, err := root.Lstat(dataLink); err == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			return false, "symbolic links (the directory's ..data is a link)"
		}
		if fi.Mode().IsRegular() {
			return true, "copies (the directory was installed with copies: its ..data is a file; link_mode = \"symlink\" makes it links, where this process can make them)"
		}
	}
	if err := platform.CheckSymlinks(root.Root); err != nil {
		return true, "copies, because " + err.Error()
	}
	return false, "symbolic links (this process can make them)"
}

// LinkMode says how the live directory's names reach the live generation,
// and why (for the agent's start-up log and status).
func (s *Store) LinkMode() (LinkMode, string, error) {
	root, err := s.open(false)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing installed yet: decide as the first install will.
		if s.Link != LinkAuto || runtime.GOOS != "windows" {
			copies, why := s.linkMode(&liveDir{})
			return modeName(copies), why, nil
		}
		return LinkAuto, "decided at the first install (symbolic links where this process can make them, else copies)", nil
	}
	if err != nil {
		return LinkAuto, "", err
	}
	defer root.Close()
	return modeName(root.copies), root.why, nil
}

func modeName(copies bool) LinkMode {
	if copies {
		return LinkCopy
	}
	return LinkSymlink
}

// dataTarget is the generation ..data names: the link's target, or in
// the copy mode the file's content. Either form is read in either mode,
// so a directory changes mode at its next swap.
func (s *Store) dataTarget(root *liveDir) (string, error) {
	fi, err := root.Lstat(dataLink)
	if err != nil {
		return "", err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return root.Readlink(dataLink)
	case fi.Mode().IsRegular() && fi.Size() <= 256:
		b, err := root.ReadFile(dataLink)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", fmt.Errorf("%s is neither a link nor a small file naming a generation; remove it and install again", filepath.Join(s.Dir, dataLink))
}

func (s *Store) step(name string) {
	if s.crashAt != nil {
		s.crashAt(name)
	}
}

// generation reads generation name's record.
func (s *Store) generation(root *liveDir, name string) (Generation, error) {
	gens, err := s.generations(root)
	if err != nil {
		return Generation{}, err
	}
	for _, g := range gens {
		if g.Name == name && g.Files != nil {
			return g, nil
		}
	}
	return Generation{}, fmt.Errorf("%s: generation %s is not there, or its %s is damaged", s.Dir, name, metaFile)
}

// swapCopies makes generation gen live in the copy mode: journal, copies,
// ..data, journal removed (see the copy mode above). It is also how
// recovery finishes an interrupted swap, so every step may find itself
// already done.
func (s *Store) swapCopies(root *liveDir, gen string) error {
	g, err := s.generation(root, gen)
	if err != nil {
		return err
	}
	data, err := s.readGeneration(root, g)
	if err != nil {
		return err
	}
	// What the visible names held as installed: a copy that differs from
	// it and from gen's was edited by hand, and is kept (..displaced).
	var was Generation
	if t, err := s.dataTarget(root); err == nil {
		was, _ = s.generation(root, t)
	}
	_ = root.Remove(swapTmp)
	if err := s.replaceFile(root, swapTmp, swapJournal, []byte(gen+"\n"), 0o600); err != nil {
		return fmt.Errorf("%s: write the swap journal: %w", s.Dir, err)
	}
	s.step("journaled")
	if err := s.waitUnheld(sortedNames(g.Files), gen); err != nil {
		return err
	}
	for _, name := range sortedNames(g.Files) {
		if err := s.placeCopy(root, g, name, data[name], was, true); err != nil {
			return err
		}
		s.step("copied " + name)
	}
	_ = root.Remove(dataTmp)
	if err := s.replaceFile(root, dataTmp, dataLink, []byte(gen+"\n"), 0o600); err != nil {
		return fmt.Errorf("%s: swap to %s: %w", s.Dir, gen, err)
	}
	s.step("pointed")
	// Not there: another certkeeper finished the same swap (Windows has
	// no directory lock; both wrote the same files).
	if err := root.Remove(swapJournal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: remove the swap journal: %w", s.Dir, err)
	}
	return syncDir(root, ".")
}

// placeCopy replaces the visible name by a fresh copy of data, generation
// g's file: created with its mode, owner and (on Windows) access list
// before its first byte, fsynced, and renamed over the name, so a reader
// sees the old file or the new one. A regular file found at a name that
// was (the generation the names held until now) has no file of, and that
// is not g's, was put there by hand: it is kept under ..displaced/ first.
// An edited copy of a live file is not kept, as an edit through a link is
// not in the link mode. A link certkeeper did not make, a directory or a
// device is refused, as in the link mode.
//
// swapping says whether a swap (journaled) is placing it, or drift repair.
func (s *Store) placeCopy(root *liveDir, g Generation, name string, data []byte, was Generation, swapping bool) error {
	kind, _, err := s.classifyVisible(root, name)
	if err != nil {
		return err
	}
	if _, known := was.Files[name]; kind == visRegular && !known {
		if b, ok, err := s.readRegular(root, name); err == nil && ok {
			if hashOf(b) != g.Files[name].SHA256 {
				if err := s.displace(root, name); err != nil {
					return err
				}
			}
		}
	}
	// The fresh copy is written whole first; the rename over the name may
	// meet a file another process holds open (Windows), and is retried a
	// little while (renameLive, held.go).
	tmp := copyTmp + randomSuffix()
	if err := s.writeFile(root, tmp, data, s.copyMode(name, g.Files[name])); err != nil {
		return err
	}
	if err := s.renameLive(root, tmp, name, g.Name, !swapping); err != nil {
		return err
	}
	return syncDir(root, path.Dir(name))
}

// copyMode is the mode a visible copy gets: the configured one, else the
// one its generation recorded (wantMode).
func (s *Store) copyMode(name string, m Meta) fs.FileMode {
	if mode, ok := s.Modes[name]; ok {
		return mode
	}
	return m.Mode
}

// journalAction is what recovery does about a copy-mode swap journal.
type journalAction int

const (
	// journalNone: no journal, no swap was under way.
	journalNone journalAction = iota
	// journalForward: finish the swap to the journal's generation.
	journalForward
	// journalBack: the journal names no whole generation (it can not
	// happen, a generation is whole before its journal is written; but
	// a directory edited by hand can): put the visible files back to
	// ..data's generation, and drop the journal.
	journalBack
	// journalStuck: neither is whole; nothing to restore from.
	journalStuck
)

// journalState is what recovery found, as data.
type journalState struct {
	Present bool
	// Target is the generation the journal names ("" if unreadable);
	// TargetWhole says its record and every file's installed bytes are
	// there.
	Target      string
	TargetWhole bool
	// Data is the generation ..data names ("" if none); DataWhole as
	// TargetWhole.
	Data      string
	DataWhole bool
}

// decideJournal is recovery's decision: forward whenever the journal's
// generation is whole, so the live set becomes what the interrupted swap
// was making live (its reload is owed already); back only when it is not.
func decideJournal(j journalState) (journalAction, string) {
	switch {
	case !j.Present:
		return journalNone, ""
	case j.Target != "" && j.TargetWhole:
		return journalForward, j.Target
	case j.Data != "" && j.DataWhole:
		return journalBack, j.Data
	}
	return journalStuck, ""
}

// recoverJournal finishes, or undoes, a copy-mode swap a crash
// interrupted. It runs in either mode: a directory whose mode changed
// since still gets its interrupted swap completed.
func (s *Store) recoverJournal(root *liveDir) error {
	j := journalState{}
	b, err := root.ReadFile(swapJournal)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("%s: read the swap journal: %w", s.Dir, err)
	default:
		j.Present = true
		if name := strings.TrimSpace(string(b)); len(b) <= 256 {
			if _, ok := genSeq(name); ok {
				j.Target = name
			}
		}
	}
	if !j.Present {
		return nil
	}
	whole := func(name string) bool {
		g, err := s.generation(root, name)
		if err != nil {
			return false
		}
		_, err = s.readGeneration(root, g)
		return err == nil
	}
	if j.Target != "" {
		j.TargetWhole = whole(j.Target)
	}
	if t, err := s.dataTarget(root); err == nil {
		if _, ok := genSeq(t); ok {
			j.Data, j.DataWhole = t, whole(t)
		}
	}
	action, gen := decideJournal(j)
	switch action {
	case journalForward:
		if err := s.recordLive(root, gen); err != nil {
			return err
		}
		return s.swapCopies(root, gen)
	case journalBack:
		// A swap to ..data's own generation: the same steps put its
		// copies back and drop the journal.
		return s.swapCopies(root, gen)
	case journalStuck:
		return fmt.Errorf("%s: a swap was interrupted (%s names %q), and neither that generation nor the one ..data names (%q) is whole; install the bundle again",
			s.Dir, swapJournal, strings.TrimSpace(string(b)), j.Data)
	}
	return nil
}

// placeMissing writes a copy at each visible name of generation g that
// holds none (deleted, or a link left from the link mode): what recover
// does in the copy mode, as it relinks in the link mode. Edited copies
// are drift, for Repair.
func (s *Store) placeMissing(root *liveDir, g Generation) error {
	var names []string
	for _, name := range sortedNames(g.Files) {
		kind, _, err := s.classifyVisible(root, name)
		if err != nil {
			return err
		}
		if kind == visMissing || kind == visOurs || kind == visOursElsewhere {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	data, err := s.readGeneration(root, g)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := s.placeCopy(root, g, name, data[name], g, false); err != nil {
			return err
		}
	}
	return syncDir(root, ".")
}

// recopy writes fresh copies at the named visible names, from data (a
// file's installed bytes, by name) when it holds them, else from the
// sealed copies: drift repair of the copies themselves.
func (s *Store) recopy(root *liveDir, g Generation, names map[string]bool, data map[string][]byte) error {
	var list []string
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	var errs []error
	for _, name := range list {
		m := g.Files[name]
		b := data[name]
		if b == nil || hashOf(b) != m.SHA256 {
			var err error
			if b, err = s.pristine(root, g.Name, name, m); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := s.placeCopy(root, g, name, b, g, false); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := syncDir(root, "."); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
