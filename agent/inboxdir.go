package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// The inbox on disk. The agent runs as root and the inbox is filled by
// others (an admin's scp, a push account), so every operation goes
// through an os.Root opened on the inbox after checking it, and rejected/
// through one opened below it: nothing follows a symlink out of them, and
// a directory swapped after the check is not the one operated on (the
// checks are made on the opened directory itself).
//
// An inbox (or its rejected/) is refused, and nothing in it touched, when
// it is a symlink, is not owned by the agent's user, or is writable by
// others; it may be writable by its group only when the bundle names that
// group in inbox_group (a dedicated push account).
const (
	// MaxSetFiles and MaxSetBytes bound what one inbox set may hold: a
	// bundle is a handful of files of a few KiB. A set beyond either is
	// rejected before any file is read, with the reason in rejected/.
	MaxSetFiles = 16
	MaxSetBytes = 4 << 20
	// maxListed bounds the entries read from the inbox in one listing.
	maxListed = 1024
)

// inboxDir is a bundle's inbox: its path and the group allowed to write
// it ("" for none).
type inboxDir struct {
	dir, group string
}

func inboxOf(b *Bundle) inboxDir { return inboxDir{dir: b.Inbox, group: b.InboxGroup} }

// open opens the inbox after checking it. A missing inbox is
// fs.ErrNotExist.
func (ib inboxDir) open() (*os.Root, error) {
	return openChecked(nil, ib.dir, "inbox "+ib.dir, ib.group)
}

// openChecked opens the directory name (in parent, or a path when parent
// is nil) as a Root, refusing a symlink, a directory not owned by the
// agent's user, or one writable by others or by a group other than group.
func openChecked(parent *os.Root, name, what, group string) (*os.Root, error) {
	lstat, open := os.Lstat, os.OpenRoot
	if parent != nil {
		lstat, open = parent.Lstat, parent.OpenRoot
	} else if err := checkAncestors(name, what); err != nil {
		return nil, err
	}
	fi, err := lstat(name)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symlink; certkeeper does not follow links in its inbox, and touches nothing through one: remove the link (the agent makes the directory) or name the directory itself in the config", what)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (%s); move it away (the agent makes the directory)", what, fi.Mode().Type())
	}
	r, err := open(name)
	if err != nil {
		return nil, err
	}
	now, err := r.Stat(".")
	if err == nil && !os.SameFile(fi, now) {
		err = fmt.Errorf("%s was replaced while being opened; nothing in it was touched", what)
	}
	if err == nil {
		err = checkInboxOwner(now, what, group)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ensure creates the inbox if it is missing (0700, or 0770 with the
// group of inbox_group), and checks it.
func (ib inboxDir) ensure() error {
	if _, err := os.Lstat(ib.dir); errors.Is(err, fs.ErrNotExist) {
		if err := checkAncestors(ib.dir, "inbox "+ib.dir); err != nil {
			return err
		}
		// 0711 as the state directory: passable, not listable, whatever
		// the umask of whoever starts the agent (not always systemd's 0077).
		if err := os.MkdirAll(filepath.Dir(ib.dir), 0o711); err != nil {
			return err
		}
		if err := os.Mkdir(ib.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if ib.group != "" {
			if err := shareInbox(ib.dir, ib.group); err != nil {
				return err
			}
		}
	}
	r, err := ib.open()
	if err != nil {
		return err
	}
	return r.Close()
}

// list lists the files of a set: every entry but directories, names still
// uploading and the reserved name rejected (even when it is not the
// directory it should be). Symlinks and FIFOs are listed (and rejected
// when read), so they do not sit there unexplained.
func (ib inboxDir) list() ([]InboxFile, error) {
	r, err := ib.open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d, err := r.Open(".")
	if err != nil {
		return nil, err
	}
	entries, err := d.ReadDir(maxListed)
	d.Close()
	if err != nil && err != io.EOF {
		return nil, err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	var out []InboxFile
	for _, e := range entries {
		if e.IsDir() || Uploading(e.Name()) || e.Name() == rejectedDir {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, InboxFile{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()})
	}
	return out, nil
}

// setTooLarge says why a listing is beyond what one set may hold, or "".
func setTooLarge(files []InboxFile) string {
	if len(files) > MaxSetFiles {
		return fmt.Sprintf("the set has %d files, more than the limit of %d for one inbox set; deliver one bundle at a time", len(files), MaxSetFiles)
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	if total > MaxSetBytes {
		return fmt.Sprintf("the set has %d bytes, more than the limit of 4 MiB for one inbox set; deliver one bundle at a time", total)
	}
	return ""
}

// read reads a set's files through the inbox's Root: a symlink, a device
// or a FIFO is refused, and so is a file over 1 MiB or a set beyond
// MaxSetFiles or MaxSetBytes (before anything is read).
func (ib inboxDir) read(files []InboxFile) ([]rotate.Input, error) {
	if why := setTooLarge(files); why != "" {
		return nil, errors.New(why)
	}
	r, err := ib.open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var inputs []rotate.Input
	for _, f := range files {
		p := filepath.Join(ib.dir, f.Name)
		fi, err := r.Lstat(f.Name)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symlink; give the file itself (certkeeper does not follow links in its inputs)", p)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file (%s)", p, platform.FileType(fi.Mode()))
		}
		data, err := readRegular(r, f.Name, p)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, rotate.Input{Name: f.Name, Data: data})
	}
	return inputs, nil
}

func readRegular(r *os.Root, name, p string) ([]byte, error) {
	file, err := r.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if fi, err := file.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while being opened", p)
	}
	data, err := io.ReadAll(io.LimitReader(file, pki.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) > pki.MaxFileSize {
		return nil, fmt.Errorf("%s: larger than the 1 MiB limit for certificate and key files", p)
	}
	return data, nil
}

// take removes the files of an installed set from the inbox, those that
// are still what was read: one that changed meanwhile stays for the next
// round.
func (ib inboxDir) take(read []InboxFile) error {
	r, err := ib.open()
	if err != nil {
		return err
	}
	defer r.Close()
	var errs []error
	for _, f := range read {
		fi, err := r.Lstat(f.Name)
		if err != nil || fi.Size() != f.Size || !fi.ModTime().Equal(f.ModTime) {
			continue
		}
		if err := r.Remove(f.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reject moves a set to rejected/<sequence>-<time>/ with a reason file,
// and prunes the oldest rejected sets beyond keepRejected. The sequence is
// one more than the highest among the sets there, so the order does not
// depend on the clock (a clock set back once deleted the newest set), and
// is zero-padded (rejectedSeqWidth) so that `ls` lists the sets in order;
// older versions' unpadded names are read as well. It returns the
// directory.
func (ib inboxDir) reject(read []InboxFile, reason string, now time.Time) (string, error) {
	r, err := ib.open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	what := "inbox " + filepath.Join(ib.dir, rejectedDir)
	if err := r.Mkdir(rejectedDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	rej, err := openChecked(r, rejectedDir, what, "")
	if err != nil {
		return "", err
	}
	defer rej.Close()
	sets, err := rejectedSets(rej)
	if err != nil {
		return "", err
	}
	seq := 1
	if len(sets) > 0 {
		seq = sets[len(sets)-1].seq + 1
	}
	base := rejectedName(seq, now)
	if err := rej.Mkdir(base, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(ib.dir, rejectedDir, base)
	var names []string
	var errs []error
	for _, f := range read {
		if err := r.Rename(f.Name, filepath.Join(rejectedDir, base, f.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		names = append(names, f.Name)
	}
	text := fmt.Sprintf("rejected %s\nfiles: %s\n\n%s\n", now.UTC().Format(time.RFC3339), strings.Join(names, " "), reason)
	if err := rej.WriteFile(filepath.Join(base, reasonFile), []byte(text), 0o600); err != nil {
		errs = append(errs, err)
	}
	sets = append(sets, rejectedSet{name: base, seq: seq})
	for len(sets) > keepRejected {
		if err := rej.RemoveAll(sets[0].name); err != nil {
			errs = append(errs, err)
		}
		sets = sets[1:]
	}
	return dst, errors.Join(errs...)
}

// rejectedSeqWidth is the digits of a rejected set's sequence: a million
// sets before names outgrow it (and sort by length first, then).
const rejectedSeqWidth = 6

// rejectedName is the directory name of the seq-th rejected set, rejected
// at now: "000042-20261201T234040.123Z".
func rejectedName(seq int, now time.Time) string {
	return fmt.Sprintf("%0*d-%s", rejectedSeqWidth, seq, now.UTC().Format("20060102T150405.000Z"))
}

type rejectedSet struct {
	name string
	seq  int
}

// rejectedSets lists the rejected sets, oldest first: by the sequence
// their names start with; a set of an older version (a time for a name)
// counts as sequence 0. Only directories count; what else is there is
// left alone.
func rejectedSets(rej *os.Root) ([]rejectedSet, error) {
	d, err := rej.Open(".")
	if err != nil {
		return nil, err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var sets []rejectedSet
	for _, e := range entries {
		if !e.IsDir() { // a symlink is not a set: never removed through
			continue
		}
		seq := 0
		if i := strings.IndexByte(e.Name(), '-'); i > 0 {
			if n, err := strconv.Atoi(e.Name()[:i]); err == nil && n > 0 {
				seq = n
			}
		}
		sets = append(sets, rejectedSet{name: e.Name(), seq: seq})
	}
	slices.SortStableFunc(sets, func(a, b rejectedSet) int {
		if a.seq != b.seq {
			return a.seq - b.seq
		}
		return strings.Compare(a.name, b.name)
	})
	return sets, nil
}
