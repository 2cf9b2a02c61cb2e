package platform

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AtomicWrite replaces a file so that a reader, or whatever survives a
// crash, sees the old content or the new one, never a mix, and so that the
// file never grants more than Mode and Owner allow, at any instant:
//
//  1. a temporary file is created beside the target (O_EXCL, so nothing
//     planted there is reused), with the owner's bits of Mode only;
//  2. it is given Owner, then exactly Mode (on Windows: the access list
//     Mode stands for, see SecureFile), all before the first byte;
//  3. the data is written and the file fsynced;
//  4. it is renamed over the target, and the directory fsynced, so that
//     the rename itself survives a power loss.
//
// Any error removes the temporary file and leaves the old target as it
// was.
//
// On Windows step 4 has no directory fsync: FlushFileBuffers needs a
// handle with write access, and a directory opened for reading has none
// (it fails with "Access denied"). The durability Windows gives instead:
// the file's content is on disk after FlushFileBuffers, and NTFS journals
// the rename as a metadata change, so after a power loss the target is
// either the old file or the new one, whole; a rename that had not yet
// reached NTFS's log is lost as if it had never been made.
type AtomicWrite struct {
	// Mode is the target's permission bits (0600 for a key).
	Mode fs.FileMode
	// Owner is given to the file before its first byte; NoOwner, or the
	// zero Owner, keeps the process's own.
	Owner Owner
	// Temp names the temporary file, relative to the root (WriteFileIn)
	// or to the target's directory (WriteFile), on the same file system.
	// Empty picks TempName beside the target; a caller whose recovery
	// removes leftovers of its own pattern names them itself.
	Temp string
	// NoSync skips both fsyncs, for files rewritten often whose loss in a
	// power cut costs nothing (a status snapshot, a metrics textfile).
	// The replacement is still atomic for readers.
	NoSync bool
}

// WriteFileAtomic replaces path with data, mode and owner as AtomicWrite
// describes, fsynced.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode, owner Owner) error {
	return AtomicWrite{Mode: mode, Owner: owner}.WriteFile(path, data)
}

// WriteFile replaces path with data.
func (w AtomicWrite) WriteFile(path string, data []byte) error {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	return w.WriteFileIn(root, filepath.Base(path), data)
}

// WriteFileIn replaces name, a slash-separated path inside root, with
// data. Nothing outside root is ever touched, whatever symlinks lie in
// between.
func (w AtomicWrite) WriteFileIn(root *os.Root, name string, data []byte) error {
	dir, base := splitName(name)
	tmp := w.Temp
	if tmp == "" {
		tmp = joinName(dir, TempName(base))
	}
	full := filepath.Join(root.Name(), filepath.FromSlash(name))
	if err := w.create(root, tmp, data, !w.NoSync); err != nil {
		return fmt.Errorf("write %s: %w", full, err)
	}
	if err := RetryBusy(func() error { return root.Rename(tmp, name) }); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", full, err)
	}
	if !w.NoSync {
		if err := SyncDirIn(root, dir); err != nil {
			return fmt.Errorf("write %s: the file is in place, but %w", full, err)
		}
	}
	return nil
}

// WriteNewFile creates name inside root, which must not exist yet, with
// data: mode and owner set before the first byte, fsynced, removed again
// on any error. It is the first half of AtomicWrite, for callers that
// rename a whole directory (a staged generation) or many files at once (a
// batch) into place themselves.
func WriteNewFile(root *os.Root, name string, data []byte, mode fs.FileMode, owner Owner, sync bool) error {
	w := AtomicWrite{Mode: mode, Owner: owner}
	if err := w.create(root, name, data, sync); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(root.Name(), filepath.FromSlash(name)), err)
	}
	return nil
}

// ErrSetOwner marks the failure to give a new file its owner, for callers
// that add a hint of their own.
var ErrSetOwner = errors.New("set owner")

// atomicStep, when set (by tests), is called with the open temporary
// file after each step, to observe its mode at every instant.
var atomicStep func(step string, f *os.File)

func (w AtomicWrite) create(root *os.Root, name string, data []byte, sync bool) (err error) {
	// Only the owner's bits at first: whoever else the final mode admits
	// is admitted only once the owner is right.
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, w.Mode&0o700)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = root.Remove(name)
			err = explainWriteError(err)
		}
	}()
	step := func(s string) {
		if atomicStep != nil {
			atomicStep(s, f)
		}
	}
	step("created")
	if err := SecureFile(filepath.Join(root.Name(), filepath.FromSlash(name)), w.Mode); err != nil {
		return err
	}
	if w.Owner != (Owner{}) && (w.Owner.UID >= 0 || w.Owner.GID >= 0) {
		if err := f.Chown(w.Owner.UID, w.Owner.GID); err != nil {
			return fmt.Errorf("%w %s:%s: %w", ErrSetOwner, w.Owner.User, w.Owner.Group, err)
		}
		step("owned")
	}
	// The umask may have narrowed the mode; set it exactly. It is never
	// wider than what was asked.
	if err := f.Chmod(w.Mode); err != nil {
		return err
	}
	step("moded")
	if _, err := f.Write(data); err != nil {
		return err
	}
	step("written")
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
		step("synced")
	}
	return nil
}

// explainWriteError adds what to do to the failures an admin can fix.
func explainWriteError(err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("%w (the file system is full; the old file is kept: free some space, then try again)", err)
	}
	return err
}

// TempName is the temporary name AtomicWrite gives a file being written
// in place of base: hidden, and recognised by IsTempName.
func TempName(base string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "." + base + ".tmp-" + hex.EncodeToString(b[:])
}

// IsTempName reports whether name is one TempName made: a leftover of a
// write that a crash interrupted, safe to remove.
func IsTempName(name string) bool {
	i := strings.LastIndex(name, ".tmp-")
	if !strings.HasPrefix(name, ".") || i < 2 || len(name)-i != len(".tmp-")+12 {
		return false
	}
	_, err := hex.DecodeString(name[i+len(".tmp-"):])
	return err == nil
}

// SyncDir makes the renames and creations in dir durable. On Windows it
// does nothing (see AtomicWrite for why and for what Windows gives).
func SyncDir(dir string) error {
	if !canSyncDir {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// SyncDirIn is SyncDir for name, a directory inside root.
func SyncDirIn(root *os.Root, name string) error {
	if !canSyncDir {
		return nil
	}
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", filepath.Join(root.Name(), filepath.FromSlash(name)), err)
	}
	return nil
}

func splitName(name string) (dir, base string) {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		return name[:i], name[i+1:]
	}
	return ".", name
}

func joinName(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// busyBackoff is how long RetryBusy waits between tries: about 0.6 s in
// all, far longer than another process takes to read a small file.
var busyBackoff = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}

// RetryBusy runs op again, a bounded number of times, while it fails as
// RenameBusy says a held file does. On Windows a reader of a small state
// file (os.ReadFile opens without FILE_SHARE_DELETE) makes a rename over
// it or its removal fail for the moment it reads; on Unix that never
// happens and op runs once.
func RetryBusy(op func() error) error {
	err := op()
	for _, d := range busyBackoff {
		if err == nil || !RenameBusy(err) {
			return err
		}
		time.Sleep(d)
		err = op()
	}
	return err
}
