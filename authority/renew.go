package authority

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RenewOptions tune ca renew.
type RenewOptions struct {
	// Within: renew what expires within this window (a duration, or a
	// fraction of each certificate's lifetime).
	Within Window
	// Key is RenewKeep or RenewRotate; "" uses the settings' renew_key.
	Key string
	// Days is the new validity; 0 uses the settings' node_days.
	Days int
	// DryRun decides and reports, and changes nothing.
	DryRun bool
	// CSR are the ids that renew by CSR (the inventory's mode "csr" or
	// "pull+csr"): left to their agents even while they hold the first
	// certificate ca issue made (DueForRenewal).
	CSR map[string]bool
}

// RenewResult is what ca renew did.
type RenewResult struct {
	Result
	Due []Due
	// CRL is set when the CRL was refreshed because it would expire
	// within the window too; CRLErr when that failed.
	CRL    *CRLInfo
	CRLErr error
}

// Renew re-issues every certificate that expires within o.Within (see
// DueForRenewal) into its publish directory, with the node's recorded names
// and key type, and a new key or the published one as configured. It also
// refreshes cluster.crl when that expires within the window, so a timer
// running `ca renew` keeps both fresh.
func (a *Authority) Renew(ctx context.Context, o RenewOptions) (*RenewResult, error) {
	if err := o.Within.Check(); err != nil {
		return nil, err
	}
	policy := o.Key
	if policy == "" {
		policy = a.Settings.RenewKey
	}
	if policy != RenewKeep && policy != RenewRotate {
		return nil, fmt.Errorf("key policy %q is not %q or %q", policy, RenewKeep, RenewRotate)
	}
	now := a.opts.now()
	res := &RenewResult{}
	var all []NodeRecord
	var allCerts map[string]CertRecord
	err := a.view(func(tx *bolt.Tx) error {
		nodes, err := allNodes(tx)
		if err != nil {
			return err
		}
		certs := map[string]CertRecord{}
		for _, n := range nodes {
			s, err := ParseSerial(n.Current)
			if err != nil {
				continue
			}
			c, err := getCert(tx, s)
			if err != nil {
				return err
			}
			if c != nil {
				certs[n.Current] = *c
			}
		}
		all, allCerts = nodes, certs
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Reading files outside the transaction: a slow disk must not hold
	// the database lock that ca sign waits for.
	// By the certificate's source, not the node's mode: a certificate
	// an admin handed in (ca sign by hand, for a node whose key is made
	// here) is current but not published, on purpose.
	unpublished := map[string]bool{}
	for i := range all {
		n := &all[i]
		if c, ok := allCerts[n.Current]; ok && c.Source != SourceCSR && n.Revoked == nil && c.Revoked == nil && !a.published(n) {
			unpublished[n.ID] = true
		}
	}
	res.Due, res.Skipped = DueForRenewal(all, allCerts, unpublished, o.CSR, now, o.Within)
	if o.DryRun {
		return res, nil
	}
	if len(res.Due) > 0 {
		issuer, err := a.Issuer()
		if err != nil {
			return nil, err
		}
		nb, na, capped, err := a.leafValidity(now, o.Days)
		if err != nil {
			return nil, err
		}
		res.Capped, res.NotAfter = capped, na
		jobs := make([]*job, 0, len(res.Due))
		for _, d := range res.Due {
			j := a.planIssue(Request{ID: d.Node.ID, Kind: d.Node.Kind, Names: d.Node.Names()}, &d.Node, "", now)
			j.source, j.note = SourceRenew, ""
			if policy == RenewKeep {
				cur, err := x509.ParseCertificate(d.Cert.DER)
				if err == nil {
					j.key, err = a.publishedKey(d.Node, cur)
				}
				if err != nil {
					j.key, j.note = nil, fmt.Sprintf("made a new key: the published one can not be kept (%v)", err)
				}
			}
			jobs = append(jobs, j)
		}
		a.sign(ctx, issuer, jobs, nb, na)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted before anything was recorded: %w", err)
		}
		if err := a.commit(jobs, now); err != nil {
			return nil, err
		}
		a.collect(&res.Result, jobs)
	}
	if this, next, ok := a.publishedCRL(); ok && CRLDue(this, next, now, o.Within) {
		res.CRL, res.CRLErr = a.WriteCRL(0)
	}
	return res, nil
}

// CRLDue decides whether ca renew rewrites the published CRL: when its
// next update falls within the renewal window (a fraction applies to the
// CRL's own validity), but not before half its life has passed, so a
// frequent timer with a window longer than crl_days does not sign a new
// CRL on every run. A CRL that does not parse is due now.
func CRLDue(thisUpdate, nextUpdate, now time.Time, within Window) bool {
	threshold := min(within.Span(thisUpdate, nextUpdate), nextUpdate.Sub(thisUpdate)/2)
	return nextUpdate.Sub(now) <= threshold
}

// publishedCRL reads the published CRL's validity, if there is one.
func (a *Authority) publishedCRL() (thisUpdate, nextUpdate time.Time, ok bool) {
	data, err := os.ReadFile(a.path(CRLFile))
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return time.Time{}, time.Time{}, false
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		// A damaged CRL is replaced: every daemon checking it fails now.
		return time.Time{}, time.Time{}, true
	}
	return crl.ThisUpdate, crl.NextUpdate, true
}
