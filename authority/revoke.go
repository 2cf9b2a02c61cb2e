package authority

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// RevokeResult is what ca revoke did.
type RevokeResult struct {
	// Node is set when an id was revoked (the node is retired: renew and
	// sign leave it alone until it is issued again with --force).
	Node *NodeRecord
	// Revoked are the certificates revoked now; Already those that were.
	Revoked []CertRecord
	Already []CertRecord
}

// Revoke revokes a node by id (every one of its certificates that has not
// expired, and the node itself) or one certificate by serial. The id wins
// when target is both. It records the revocation; WriteCRL publishes it.
func (a *Authority) Revoke(target string, reason int) (*RevokeResult, error) {
	if _, ok := reasonOK(reason); !ok {
		return nil, fmt.Errorf("unknown revocation reason %d", reason)
	}
	db, err := a.openDB(false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	now := a.opts.now().UTC().Truncate(time.Second)
	rev := &Revocation{At: now, Reason: reason}
	res := &RevokeResult{}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		n, err := getNode(tx, target)
		if err != nil {
			return err
		}
		if n != nil {
			certs, err := allCerts(tx)
			if err != nil {
				return err
			}
			for _, c := range certs {
				if c.ID != target {
					continue
				}
				if err := revokeOne(tx, c, rev, now, res, true); err != nil {
					return err
				}
			}
			if n.Revoked == nil {
				n.Revoked = rev
				if err := putNode(tx, n); err != nil {
					return err
				}
			}
			res.Node = n
			return nil
		}
		serial, perr := ParseSerial(target)
		var c *CertRecord
		if perr == nil {
			if c, err = getCert(tx, serial); err != nil {
				return err
			}
		}
		if c == nil {
			return fmt.Errorf("no node and no certificate %q in %s (`certkeeper ca list --all` shows every id and serial)", target, a.path(DBFile))
		}
		return revokeOne(tx, *c, rev, now, res, false)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func revokeOne(tx *bolt.Tx, c CertRecord, rev *Revocation, now time.Time, res *RevokeResult, skipExpired bool) error {
	switch {
	case c.Revoked != nil:
		res.Already = append(res.Already, c)
		return nil
	case skipExpired && !now.Before(c.NotAfter):
		return nil // expired: no one accepts it; nothing to list
	}
	c.Revoked = rev
	serial, err := ParseSerial(c.Serial)
	if err != nil {
		return err
	}
	if err := putCert(tx, serial, &c, true); err != nil {
		return err
	}
	res.Revoked = append(res.Revoked, c)
	return nil
}

func reasonOK(code int) (string, bool) {
	for n, c := range pki.Reasons {
		if c == code {
			return n, true
		}
	}
	return "", false
}

// publishedNodes lists the node directories under nodes/ (real
// directories only; a planted symlink is passed over).
func (a *Authority) publishedNodes() []string {
	ents, err := os.ReadDir(a.path(NodesDir))
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range ents {
		if e.Type().IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// currentCRL is the published cluster.crl, for a node directory being
// published, or nil when there is none that parses.
func (a *Authority) currentCRL() []byte {
	data, err := os.ReadFile(a.path(CRLFile))
	if err != nil {
		return nil
	}
	if _, err := pki.ParseCRLs(data); err != nil {
		return nil
	}
	return data
}

// CRLInfo describes a CRL file just written: one CRL per CA the nodes
// trust (two while a CA rotation runs), sharing one number.
type CRLInfo struct {
	Path   string
	Number *big.Int
	// Entries are the revoked certificates of every CA's CRL.
	Entries    []pki.Revoked
	ThisUpdate time.Time
	// NextUpdate is the earliest of the CRLs'.
	NextUpdate time.Time
	// CAs names the CA of each CRL in the file, in order.
	CAs []string
}

// crlIssuers are the CAs the nodes trust now, each of which signs a CRL
// of the revoked certificates it issued: the signing CA alone, or, while
// a rotation runs (until it is finishing), both of its CAs, old first.
func (a *Authority) crlIssuers(r *Rotation) ([]*pki.Issuer, error) {
	if r == nil || r.Phase == PhaseFinishing {
		is, err := a.Issuer()
		if err != nil {
			return nil, err
		}
		return []*pki.Issuer{is}, nil
	}
	var out []*pki.Issuer
	for _, fp := range []string{r.From, r.To} {
		is, err := a.rotationIssuer(fp)
		if err != nil {
			return nil, err
		}
		out = append(out, is)
	}
	return out, nil
}

// rotationIssuer is a CA of the rotation under way with its key, from
// rotation/ (the signing CA's from cluster.key).
func (a *Authority) rotationIssuer(fp string) (*pki.Issuer, error) {
	if fp == a.fingerprint {
		return a.Issuer()
	}
	cert, err := a.readCA(fp)
	if err != nil {
		return nil, err
	}
	p := a.path(filepath.FromSlash(caFileName(fp, ".key")))
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (the key of a CA of the rotation under way, which signs its own CRL; restore it from a backup of the CA directory)", p, err)
	}
	var pass []byte
	if pki.KeyIsEncrypted(data) {
		if pass, err = a.passphrase(); err != nil {
			return nil, err
		}
	}
	key, err := pki.DecryptKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if !pki.KeyMatches(cert, key) {
		return nil, fmt.Errorf("%s does not belong to the CA certificate beside it (the public keys differ)", p)
	}
	return &pki.Issuer{Cert: cert, Key: key}, nil
}

// IssuedBy keeps the certificates ca signed (a record whose certificate
// does not parse is kept for every CA: a serial listed by a CA that did
// not issue it revokes nothing).
func IssuedBy(certs []CertRecord, ca *x509.Certificate) []CertRecord {
	var out []CertRecord
	for _, c := range certs {
		leaf, err := x509.ParseCertificate(c.DER)
		if err == nil && (!bytes.Equal(leaf.RawIssuer, ca.RawSubject) || leaf.CheckSignatureFrom(ca) != nil) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// WriteCRL signs a CRL of every revoked certificate that has not expired,
// numbered one more than the last, valid for days (0: the settings'
// crl_days), and publishes it as cluster.crl. While a CA rotation runs the
// file holds one CRL per CA the nodes trust, each listing what that CA
// issued: a peer that checks CRLs (nginx ssl_crl, openssl -crl_check)
// needs one from the issuer of every leaf it sees.
func (a *Authority) WriteCRL(days int) (*CRLInfo, error) {
	if days == 0 {
		days = a.Settings.CRLDays
	}
	if days < 1 {
		return nil, fmt.Errorf("--days %d: a CRL must be valid for at least a day", days)
	}
	r, err := a.rotation()
	if err != nil {
		return nil, err
	}
	issuers, err := a.crlIssuers(r)
	if err != nil {
		return nil, err
	}
	now := a.opts.now()
	info := &CRLInfo{Path: a.path(CRLFile), ThisUpdate: now.Add(-pki.Backdate)}
	db, err := a.openDB(false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		if cur, err := getRotation(tx); err != nil {
			return err
		} else if !sameRotation(cur, r) {
			return errors.New("a CA rotation step ran meanwhile; run the command again")
		}
		if info.Number, err = nextCRLNumber(tx); err != nil {
			return err
		}
		certs, err := allCerts(tx)
		if err != nil {
			return err
		}
		var revoked []CertRecord
		for _, c := range certs {
			if c.Revoked != nil {
				revoked = append(revoked, c)
			}
		}
		var crlPEM []byte
		for _, is := range issuers {
			next := now.Add(time.Duration(days) * 24 * time.Hour)
			if next.After(is.Cert.NotAfter) {
				next = is.Cert.NotAfter
			}
			if !next.After(info.ThisUpdate) {
				continue // an expired CA: no one accepts what it signed
			}
			entries := CRLEntries(IssuedBy(revoked, is.Cert), now)
			der, err := is.CRL(entries, info.Number, info.ThisUpdate, next, a.opts.rand())
			if err != nil {
				return err
			}
			crlPEM = append(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
			info.Entries = append(info.Entries, entries...)
			info.CAs = append(info.CAs, pki.Name(is.Cert.Subject.String()))
			if info.NextUpdate.IsZero() || next.Before(info.NextUpdate) {
				info.NextUpdate = next
			}
		}
		if crlPEM == nil {
			return fmt.Errorf("%s: %w; no CRL can be signed", a.path(CertFile), pki.ErrCAExpired)
		}
		// Published inside the transaction: if the file can not be
		// written, the CRL number is not used up. Every node's directory
		// gets it too, so push and pull carry it with the bundle; the
		// CA directory's own copy goes last, once the nodes' are in place.
		var files []pubFile
		for _, id := range a.publishedNodes() {
			files = append(files, pubFile{path.Join(NodesDir, id, CRLFile), crlPEM, certMode})
		}
		if err := publish(a.Dir, files); err != nil {
			return err
		}
		return publish(a.Dir, []pubFile{{CRLFile, crlPEM, certMode}})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(info.Entries, func(i, j int) bool { return info.Entries[i].Serial.Cmp(info.Entries[j].Serial) < 0 })
	return info, nil
}

func sameRotation(a, b *Rotation) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Phase == b.Phase && a.From == b.From && a.To == b.To && a.Aborted == b.Aborted
}

// refreshCRL signs cluster.crl again for the CAs the nodes trust now, when
// the CA directory publishes one (a rotation step changes which).
func (a *Authority) refreshCRL() error {
	if _, err := os.Stat(a.path(CRLFile)); err != nil {
		return nil
	}
	if _, err := a.WriteCRL(0); err != nil {
		return fmt.Errorf("sign %s for the CAs the nodes trust now: %w (run `certkeeper ca crl --dir %s` once fixed)", a.path(CRLFile), err, a.Dir)
	}
	return nil
}

// CAExpiry judges the cluster CA's own expiry against ca_expiry_warn, for
// ca list and ca renew: a warning (or, once expired, critical) naming
// `ca rotate` as the fix; rotate.OK and "" while it has time.
func (a *Authority) CAExpiry() (rotate.Health, string) {
	return rotate.CAExpiryHealth(a.opts.now(), []*x509.Certificate{a.Cert}, a.Settings.CAWarnShare())
}
