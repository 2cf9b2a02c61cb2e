package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The inbox of a bundle: files an admin (scp), a push (SFTP) or the agent
// itself drop for the bundle, under any names.
//
// The rule for taking a set:
//  1. Names starting with "." or ending in .tmp, .part, .partial,
//     .filepart, .swp or ~ are files still being uploaded (rsync, WinSCP,
//     editors, certkeeper push): ignored until renamed.
//  2. Nothing is read until no file has changed for the settle time
//     (debounce): no event, no modification time within it (one in the
//     future, from a sender whose clock is ahead, is not waited for).
//  3. The set is read; a file that changed while being read waits for the
//     next settle.
//  4. A set that validates is installed, and its files are removed.
//  5. A set that fails validation is rejected at once when it is complete
//     (every part present, every file whole) and wrong, or when nothing in
//     it is a certificate or a key: moved to rejected/<time>/ with a
//     reason file. A set that cannot be moved is rejected once, and left
//     until the listing changes. The name rejected is never part of a set.
//  6. A set that may still be incomplete (a key without its certificate, a
//     certificate that does not match the live key and brings none, no CA
//     and none installed, an empty file, a PEM block without its END line)
//     waits for more files, and is rejected only after it has been quiet
//     for inbox_timeout (default 2m).
//  7. A set whose every file is already in the live generation (a CA file
//     that arrived after its bundle was installed) is removed as done.
const (
	rejectedDir = "rejected"
	reasonFile  = "reason"
	// keepRejected bounds the rejected sets kept: each may hold a key.
	keepRejected = 10
)

// InboxFile is one entry of an inbox listing.
type InboxFile struct {
	Name    string
	Size    int64
	ModTime time.Time
	Mode    fs.FileMode
}

// Uploading reports whether a name is a file still being uploaded.
func Uploading(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return true
	}
	for _, s := range []string{".tmp", ".part", ".partial", ".filepart", ".swp"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// listInbox lists the files of a set: every entry but directories, names
// still uploading and the reserved name rejected (even when it is not the
// directory it should be). Symlinks and FIFOs are listed (and rejected when
// read), so they do not sit there unexplained.
func listInbox(dir string) ([]InboxFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
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

// Settled is when a listing read at now has been quiet for the settle
// time: the later of the last event and the newest modification, plus
// settle. A modification time after now (scp -p from an admin host whose
// clock is ahead) says nothing about when the file changed here, and would
// hold the set until that time: it counts as no later than the listing,
// and the file event that its write raised is what is waited on.
func Settled(files []InboxFile, lastEvent time.Time, settle time.Duration, now time.Time) time.Time {
	quiet := lastEvent
	for _, f := range files {
		if f.ModTime.After(quiet) && !f.ModTime.After(now) {
			quiet = f.ModTime
		}
	}
	return quiet.Add(settle)
}

// sameListing reports whether two listings describe the same files.
func sameListing(a, b []InboxFile) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Size != b[i].Size || !a[i].ModTime.Equal(b[i].ModTime) {
			return false
		}
	}
	return true
}

// Incomplete says why a set that failed validation may still be waiting
// for files, or "" when it is complete and simply wrong. It looks at the
// raw inputs (empty, or a PEM block cut short) and at what the set lacks
// for the layout given the live bundle.
func Incomplete(inputs []rotate.Input, c *rotate.Candidate, live *rotate.Bundle, l rotate.Layout) string {
	for _, in := range inputs {
		if len(in.Data) == 0 {
			return in.Name + " is empty (still being written?)"
		}
		if bytes.Count(in.Data, []byte("-----BEGIN ")) > bytes.Count(in.Data, []byte("-----END ")) {
			return in.Name + " ends inside a PEM block (still being written?)"
		}
	}
	if !anyParses(inputs) {
		// Nothing here is a certificate or a key (a README, a tarball, a
		// password-protected archive): no file to come will make this
		// set complete, so waiting inbox_timeout only hides the mistake.
		return ""
	}
	if l.CAOnly() {
		if len(c.CAs) == 0 && c.Leaf == nil {
			return "no CA certificate yet"
		}
		return ""
	}
	switch {
	case c.Leaf == nil:
		return "no certificate for the key yet"
	case c.Key == nil && (live == nil || live.Key == nil || !pki.KeyMatches(c.Leaf.Cert, live.Key.Signer)):
		return "no private key yet"
	case len(c.CAs) == 0 && (live == nil || len(live.CAs) == 0) && !(l.SelfSignedLeaf && pki.SelfSigned(c.Leaf.Cert)):
		return "no cluster CA yet"
	}
	return ""
}

// anyParses reports whether any input holds a certificate or a key, in
// PEM or DER.
func anyParses(inputs []rotate.Input) bool {
	for _, in := range inputs {
		if p, err := pki.Parse(in.Data); err == nil && (len(p.Certificates) > 0 || len(p.Keys) > 0) {
			return true
		}
	}
	return false
}

// alreadyLive reports whether every certificate and key of the inputs is
// already in the live generation (a CA file that arrived after its bundle
// was installed), so the set is done rather than wrong.
func alreadyLive(inputs []rotate.Input, live map[string][]byte) bool {
	if len(inputs) == 0 || len(live) == 0 {
		return false
	}
	certs := map[string]bool{}
	var keys []*pki.Key
	for _, data := range live {
		if p, err := pki.Parse(data); err == nil {
			for _, c := range p.Certificates {
				certs[pki.Fingerprint(c)] = true
			}
			keys = append(keys, p.Keys...)
		}
	}
	for _, in := range inputs {
		p, err := pki.Parse(in.Data)
		if err != nil {
			return false
		}
		for _, c := range p.Certificates {
			if !certs[pki.Fingerprint(c)] {
				return false
			}
		}
		for _, k := range p.Keys {
			if !slices.ContainsFunc(keys, func(l *pki.Key) bool { return pki.KeyMatchesKey(l.Signer, k.Signer) }) {
				return false
			}
		}
	}
	return true
}

// takeInboxFiles removes the files of an installed set from the inbox, those
// that are still what was read: one that changed meanwhile stays for the
// next round.
func takeInboxFiles(dir string, read []InboxFile) error {
	var errs []error
	for _, f := range read {
		p := filepath.Join(dir, f.Name)
		fi, err := os.Lstat(p)
		if err != nil || fi.Size() != f.Size || !fi.ModTime().Equal(f.ModTime) {
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rejectInbox moves a set to rejected/<time>/ with a reason file, and
// prunes older rejected sets beyond keepRejected. It returns the directory.
func rejectInbox(dir string, read []InboxFile, reason string, now time.Time) (string, error) {
	parent := filepath.Join(dir, rejectedDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	base := now.UTC().Format("20060102T150405.000Z")
	dst := filepath.Join(parent, base)
	for i := 1; ; i++ {
		err := os.Mkdir(dst, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", err
		}
		dst = filepath.Join(parent, fmt.Sprintf("%s-%d", base, i))
	}
	var names []string
	var errs []error
	for _, f := range read {
		if err := os.Rename(filepath.Join(dir, f.Name), filepath.Join(dst, f.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		names = append(names, f.Name)
	}
	text := fmt.Sprintf("rejected %s\nfiles: %s\n\n%s\n", now.UTC().Format(time.RFC3339), strings.Join(names, " "), reason)
	if err := os.WriteFile(filepath.Join(dst, reasonFile), []byte(text), 0o600); err != nil {
		errs = append(errs, err)
	}
	pruneRejected(parent)
	return dst, errors.Join(errs...)
}

func pruneRejected(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	sort.Strings(dirs) // the names are UTC times
	for len(dirs) > keepRejected {
		_ = os.RemoveAll(filepath.Join(parent, dirs[0]))
		dirs = dirs[1:]
	}
}

// ensureInbox creates the inbox (0700: what lands there may be a key) if
// it is missing: removed by an admin, say.
func ensureInbox(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// 0711 as the state directory: passable, not listable, whatever
		// the umask of whoever starts the agent (not always systemd's 0077).
		if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("inbox %s is not a directory", dir)
	}
	return nil
}
