package agent

import (
	"bytes"
	"io/fs"
	"maps"
	"slices"
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
//     it is a certificate or a key: moved to rejected/<sequence>-<time>/
//     with a reason file (the oldest pruned, by the sequence). A set of
//     more than MaxSetFiles files or MaxSetBytes is rejected unread. A
//     set that cannot be moved is rejected once, and left until the
//     listing changes. The name rejected is never part of a set.
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
	if why := StillWriting(inputs); why != "" {
		return why
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

// StillWriting says which input looks like a file still being written
// (empty, or a PEM block without its END line), or "". Such a set can not
// validate, so the inbox waits for it without judging it.
func StillWriting(inputs []rotate.Input) string {
	for _, in := range inputs {
		if len(in.Data) == 0 {
			return in.Name + " is empty (still being written?)"
		}
		if bytes.Count(in.Data, []byte("-----BEGIN ")) > bytes.Count(in.Data, []byte("-----END ")) {
			return in.Name + " ends inside a PEM block (still being written?)"
		}
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
	crls := map[string]bool{}
	// The CA certificates, live and brought: a set that brings CAs must
	// bring the live ones, all of them. The last step of a CA rotation
	// (the new CA alone, where both are live) is a subset of what is
	// live, yet a change.
	liveCAs, inCAs := map[string]bool{}, map[string]bool{}
	var keys []*pki.Key
	for _, data := range live {
		if p, err := pki.Parse(data); err == nil {
			for _, c := range p.Certificates {
				certs[pki.Fingerprint(c)] = true
				if c.IsCA {
					liveCAs[pki.Fingerprint(c)] = true
				}
			}
			for _, c := range p.CRLs {
				crls[string(c.Raw)] = true
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
			if c.IsCA {
				inCAs[pki.Fingerprint(c)] = true
			}
		}
		for _, c := range p.CRLs {
			if !crls[string(c.Raw)] {
				return false
			}
		}
		for _, k := range p.Keys {
			if !slices.ContainsFunc(keys, func(l *pki.Key) bool { return pki.KeyMatchesKey(l.Signer, k.Signer) }) {
				return false
			}
		}
	}
	return len(inCAs) == 0 || maps.Equal(inCAs, liveCAs)
}
