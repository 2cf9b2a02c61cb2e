package authority

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path"
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
	if _, err := pki.ParseCRL(data); err != nil {
		return nil
	}
	return data
}

// CRLInfo describes a CRL just written.
type CRLInfo struct {
	Path       string
	Number     *big.Int
	Entries    []pki.Revoked
	ThisUpdate time.Time
	NextUpdate time.Time
}

// WriteCRL signs a CRL of every revoked certificate that has not expired,
// numbered one more than the last, valid for days (0: the settings'
// crl_days), and publishes it as cluster.crl.
func (a *Authority) WriteCRL(days int) (*CRLInfo, error) {
	if days == 0 {
		days = a.Settings.CRLDays
	}
	if days < 1 {
		return nil, fmt.Errorf("--days %d: a CRL must be valid for at least a day", days)
	}
	issuer, err := a.Issuer()
	if err != nil {
		return nil, err
	}
	now := a.opts.now()
	info := &CRLInfo{Path: a.path(CRLFile), ThisUpdate: now.Add(-pki.Backdate), NextUpdate: now.Add(time.Duration(days) * 24 * time.Hour)}
	if info.NextUpdate.After(a.Cert.NotAfter) {
		info.NextUpdate = a.Cert.NotAfter
	}
	db, err := a.openDB(false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		if info.Number, err = nextCRLNumber(tx); err != nil {
			return err
		}
		certs, err := allCerts(tx)
		if err != nil {
			return err
		}
		info.Entries = CRLEntries(certs, now)
		der, err := issuer.CRL(info.Entries, info.Number, info.ThisUpdate, info.NextUpdate, a.opts.rand())
		if err != nil {
			return err
		}
		// Published inside the transaction: if the file can not be
		// written, the CRL number is not used up. Every node's directory
		// gets it too, so push and pull carry it with the bundle; the
		// CA directory's own copy goes last, once the nodes' are in place.
		crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
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

// CAExpiry judges the cluster CA's own expiry against ca_expiry_warn, for
// ca list and ca renew: a warning (or, once expired, critical) naming
// `ca rotate` as the fix; rotate.OK and "" while it has time.
func (a *Authority) CAExpiry() (rotate.Health, string) {
	return rotate.CAExpiryHealth(a.opts.now(), []*x509.Certificate{a.Cert}, a.Settings.CAWarnShare())
}
