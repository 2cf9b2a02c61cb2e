package agent

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
// The list is a file of its own, <state_dir>/refused/<bundle>, one
// "fingerprint time reason" line each, rather than a field of the agent's
// state file: `certkeeper rollback` writes it while the agent runs, and it
// must outlive restarts.
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
	fp := pki.Fingerprint(cert)
	lines := readRefused(b)
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, fp+" ") {
			kept = append(kept, l)
		}
	}
	reason = strings.Join(strings.Fields(reason), " ")
	kept = append(kept, fmt.Sprintf("%s %s %s", fp, now.UTC().Format(time.RFC3339), reason))
	if len(kept) > maxRefused {
		kept = kept[len(kept)-maxRefused:]
	}
	return writeFileAtomic(b.refusedPath(), []byte(strings.Join(kept, "\n")+"\n"), 0o600, 0o700, true)
}

// refusedReason returns why a certificate is refused, or "" if it is not.
func refusedReason(b *Bundle, cert *x509.Certificate) string {
	fp := pki.Fingerprint(cert)
	for _, l := range readRefused(b) {
		if rest, ok := strings.CutPrefix(l, fp+" "); ok {
			when, why, _ := strings.Cut(rest, " ")
			return why + ", " + when
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

// checkRefused refuses inputs from a source whose leaf is on the bundle's
// refused list.
func checkRefused(b *Bundle, inputs []rotate.Input) error {
	c := rotate.Classify(inputs)
	if c.Leaf == nil {
		return nil
	}
	if why := refusedReason(b, c.Leaf.Cert); why != "" {
		return fmt.Errorf("the source offers certificate %s, which is refused here (%s); waiting for another (to take it anyway, remove its line from %s)",
			pki.Serial(c.Leaf.Cert), why, b.refusedPath())
	}
	return nil
}
