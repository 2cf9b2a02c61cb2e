package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// A refused certificate is one a source must not install again: the
// agent's check failed on it and it was rolled back, or an admin rolled
// away from it with `certkeeper rollback`. Without the list, the next pull
// would bring the same certificate back from the admin host. A newer
// certificate is not refused; `certkeeper install` by hand is not either.
//
// A line refuses either a certificate, whatever comes with it, or one
// exact set: a rollback refuses what changed. When the leaf changed, the
// leaf is the suspect and is refused; when the generation rolled away
// from had the same leaf as the one rolled back to (a new CRL, or a CA
// rotation's trust file), refusing the leaf would refuse the live
// certificate itself and with it every later CRL and trust file, so that
// set alone is refused and the next different one is tried.
//
// The list is a file of its own, <state_dir>/refused/<bundle>, one
// "key time reason" line each, rather than a field of the agent's state
// file: `certkeeper rollback` writes it while the agent runs, and it must
// outlive restarts. The key is the leaf's fingerprint, or for a set
// "fingerprint+digest" (setDigest); an older agent reads a set's line as
// refusing nothing.
const maxRefused = 8

func (b *Bundle) refusedPath() string {
	return filepath.Join(b.stateDir, "refused", b.Name)
}

// RefuseLeaf adds a certificate to the bundle's refused list. The list is
// on disk (file and directory synced) when it returns nil: a power loss
// must not bring back a certificate that was rolled back. The agent and
// `certkeeper rollback` may both write it: the read-modify-write holds a
// lock on the list's directory.
func RefuseLeaf(b *Bundle, cert *x509.Certificate, reason string, now time.Time) error {
	return refuse(b, pki.Fingerprint(cert), reason, now)
}

// RefuseRolledAway puts on the refused list what a rollback from `from`
// to `to` rolls away from: its leaf when the leaf changed, else the exact
// set (see the list's comment). It reads both generations as installed;
// it may run under the store's lock (RollbackHook's beforeSwap). It
// returns what it refused: RefusedCertificate, RefusedSet, or "" for a
// generation without a certificate or one that cannot be read.
func RefuseRolledAway(b *Bundle, m *rotate.Manager, from, to rotate.Generation, reason string, now time.Time) (string, error) {
	read := func(g rotate.Generation) *rotate.Bundle {
		files, err := m.Store.ReadGeneration(g)
		if err != nil {
			return nil
		}
		bb, _ := rotate.ReadBundle(files, m.Spec.Layout)
		return bb
	}
	was := read(from)
	if was == nil || (was.Leaf == nil && len(was.CAs) == 0) {
		return "", nil
	}
	kind, key := RefusedCertificate, refusalKey(was.Leafish(), nil, nil, nil, false)
	if back := read(to); back != nil && back.Leaf != nil && was.Leaf != nil && back.Leaf.Equal(was.Leaf) {
		kind, key = RefusedSet, refusalKey(was.Leaf, was.Intermediates, was.CAs, was.CRLs, true)
	}
	if err := refuse(b, key, reason, now); err != nil {
		return "", err
	}
	return kind, nil
}

// What RefuseRolledAway refused.
const (
	RefusedCertificate = "certificate"
	RefusedSet         = "set"
)

// refusalKey is the refused list's key for a certificate (set false) or
// for one exact set: the leaf's fingerprint, and for a set a digest of
// its intermediates, CAs and CRLs, each in any order (the key is named by
// the leaf). A pushed set and the generation it became give the same
// digest whatever their files are called.
func refusalKey(leaf *x509.Certificate, inter, cas []*x509.Certificate, crls []*x509.RevocationList, set bool) string {
	fp := pki.Fingerprint(leaf)
	if !set {
		return fp
	}
	part := func(tag string, raws [][]byte) string {
		var sums []string
		for _, r := range raws {
			sum := sha256.Sum256(r)
			sums = append(sums, hex.EncodeToString(sum[:]))
		}
		slices.Sort(sums)
		sums = slices.Compact(sums)
		return tag + ":" + strings.Join(sums, ",")
	}
	raws := func(cs []*x509.Certificate) (r [][]byte) {
		for _, c := range cs {
			r = append(r, c.Raw)
		}
		return r
	}
	var crlRaws [][]byte
	for _, c := range crls {
		crlRaws = append(crlRaws, c.Raw)
	}
	sum := sha256.Sum256([]byte(part("intermediates", raws(inter)) + "\n" + part("cas", raws(cas)) + "\n" + part("crls", crlRaws)))
	return fp + "+" + hex.EncodeToString(sum[:16])
}

func refuse(b *Bundle, key, reason string, now time.Time) error {
	if b.stateDir == "" {
		return errors.New("bundle has no state directory")
	}
	dir := filepath.Dir(b.refusedPath())
	if err := mkdirMode(dir, 0o700); err != nil {
		return fmt.Errorf("refused list: %w", err)
	}
	unlock, err := platform.LockDir(dir)
	if err != nil {
		return fmt.Errorf("refused list: %w", err)
	}
	defer unlock()
	lines := readRefused(b)
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, key+" ") {
			kept = append(kept, l)
		}
	}
	reason = strings.Join(strings.Fields(reason), " ")
	kept = append(kept, fmt.Sprintf("%s %s %s", key, now.UTC().Format(time.RFC3339), reason))
	if len(kept) > maxRefused {
		kept = kept[len(kept)-maxRefused:]
	}
	return writeFileAtomic(b.refusedPath(), []byte(strings.Join(kept, "\n")+"\n"), 0o600, 0o700, true)
}

// refusedReason returns why a certificate, or the exact set whose key is
// setKey, is refused, or "" if neither is.
func refusedReason(b *Bundle, cert *x509.Certificate, setKey string) string {
	fp := pki.Fingerprint(cert)
	for _, l := range readRefused(b) {
		for _, k := range []string{fp, setKey} {
			if rest, ok := strings.CutPrefix(l, k+" "); ok && k != "" {
				when, why, _ := strings.Cut(rest, " ")
				if k == setKey {
					why += " (this certificate with these CAs and CRL; another set with it is taken)"
				}
				return why + ", " + when
			}
		}
	}
	return ""
}

func readRefused(b *Bundle) []string {
	if b.stateDir == "" {
		return nil
	}
	data, err := os.ReadFile(b.refusedPath())
	if err != nil {
		return nil // none refused yet; an unreadable list refuses nothing
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// checkRefused refuses inputs from a source whose leaf, or whose exact
// set, is on the bundle's refused list.
func checkRefused(b *Bundle, inputs []rotate.Input) error {
	c := rotate.Classify(inputs)
	if c.Leaf == nil {
		return nil
	}
	var inter, cas []*x509.Certificate
	for _, x := range c.Intermediates {
		inter = append(inter, x.Cert)
	}
	for _, x := range c.CAs {
		cas = append(cas, x.Cert)
	}
	var crls []*x509.RevocationList
	if c.CRL != nil {
		crls = c.CRL.CRLs
	}
	if why := refusedReason(b, c.Leaf.Cert, refusalKey(c.Leaf.Cert, inter, cas, crls, true)); why != "" {
		return fmt.Errorf("the source offers certificate %s, which is refused here (%s); waiting for another (to take it anyway, remove its line from %s)",
			pki.Serial(c.Leaf.Cert), why, b.refusedPath())
	}
	return nil
}
