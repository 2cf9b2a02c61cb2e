package rotate

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// Bundle is a validated set ready to install: the cluster CA, the leaf with
// its intermediates, and the key.
type Bundle struct {
	CAs           []*x509.Certificate
	Leaf          *x509.Certificate
	Intermediates []*x509.Certificate
	Key           *pki.Key
	// CRLs are the cluster CAs' revocation lists (one, or one per CA
	// during a CA rotation), for a layout with a CRL file: the
	// candidate's, else the live ones while the bundle's CAs sign them.
	CRLs []*x509.RevocationList
	// CRLErr is why the live CRL file could not be read (ReadBundle); the
	// rest of the bundle still vouches and lends its key.
	CRLErr error
	// Warnings are what installs but that some peer will refuse (a
	// certificate certkeeper's CA issued before node ids became SANs).
	Warnings []Problem
}

// Policy is what a candidate is judged against.
type Policy struct {
	Layout Layout
	// NodeID is this node's name; the leaf must carry it. Empty skips the
	// rule (certkeeper verify without --node-id).
	NodeID string
	// AllowCAChange lets a bundle bring a cluster CA other than the
	// installed one (a planned CA rotation).
	AllowCAChange bool
	// RefuseOlder refuses a leaf older than the live one (see Older): a pull must
	// never go back in time because the source still has an old bundle.
	RefuseOlder bool
	Now         time.Time
}

// ValidationError lists every reason a candidate was refused.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].Error()
	}
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = "  - " + p.Error()
	}
	return fmt.Sprintf("%d problems:\n%s", len(e.Problems), strings.Join(s, "\n"))
}

// Unwrap lets errors.Is find a cause such as pki.ErrEncryptedKey.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Validate judges a candidate against every rule of DESIGN.md and returns
// the bundle to install, or a *ValidationError with one problem per broken
// rule. live is the installed bundle (nil before the first install): its CA
// is the trust anchor, and its key completes a candidate that brings only a
// renewed leaf for it.
func Validate(c *Candidate, p Policy, live *Bundle) (*Bundle, error) {
	v := validator{c: c, p: p, live: live, problems: append([]Problem(nil), c.Problems...)}
	b := v.run()
	if len(v.problems) > 0 {
		return nil, &ValidationError{Problems: v.problems}
	}
	if b != nil {
		b.Warnings = v.warnings
	}
	return b, nil
}

type validator struct {
	c        *Candidate
	p        Policy
	live     *Bundle
	problems []Problem
	warnings []Problem
}

func (v *validator) fail(file, reason, hint string) {
	v.problems = append(v.problems, Problem{File: file, Reason: reason, Hint: hint})
}

func (v *validator) run() *Bundle {
	if v.p.Layout.CAOnly() {
		return v.caOnly()
	}
	c, b := v.c, &Bundle{}
	for _, x := range c.Extra {
		v.fail(x.File, fmt.Sprintf("certificate %q is neither the leaf, a CA nor an intermediate; a bundle holds one leaf", pki.Name(x.Cert.Subject.String())),
			"remove the certificates of other nodes")
	}
	if c.Leaf == nil {
		switch {
		case c.Key != nil:
			v.fail(c.Key.File, "no certificate in the bundle belongs to this private key", "add the node's certificate, or the key that matches it")
		default:
			v.fail("", "no leaf certificate in the bundle ("+orNone(c.Files())+")", "add the node's certificate and key")
		}
		return nil
	}
	leaf := c.Leaf
	b.Leaf = leaf.Cert
	for _, x := range c.Intermediates {
		b.Intermediates = append(b.Intermediates, x.Cert)
	}

	// The key: from the candidate, or the live one for a renewed leaf.
	switch {
	case c.Key != nil:
		b.Key = c.Key.Key
		if !pki.KeyMatches(leaf.Cert, c.Key.Key.Signer) {
			v.fail(c.Key.File, fmt.Sprintf("private key does not match the certificate in %s (%q)", leaf.File, pki.Name(leaf.Cert.Subject.String())),
				"take the key and certificate from the same issue")
		}
	case v.live != nil && v.live.Key != nil:
		b.Key = v.live.Key
		if !pki.KeyMatches(leaf.Cert, v.live.Key.Signer) {
			v.fail(leaf.File, "certificate does not match the installed private key, and the bundle brings no key", "include the private key that belongs to this certificate")
		}
	default:
		v.fail(leaf.File, "no private key in the bundle and none installed", fmt.Sprintf("include the private key (%s)", orName(v.p.Layout.KeyFile, "node.key")))
	}

	v.checkCA(b)
	v.checkLeaf(leaf, b)
	v.checkCRL(b)
	for _, x := range c.Intermediates {
		v.checkStrength(x.File, x.Cert)
		if err := pki.WeakSignature(x.Cert); err != nil {
			v.fail(x.File, fmt.Sprintf("intermediate %q is %v", pki.Name(x.Cert.Subject.String()), err), "")
		}
	}
	return b
}

func orNone(s string) string {
	if s == "" {
		return "nothing usable"
	}
	return s
}

// checkCA settles the trust anchor: the candidate's CA, else (for a layout
// that allows it) the self-signed leaf itself, else the live one. A
// self-signed leaf is its own CA whatever is installed: judged against the
// live CA it could only fail the chain check with a baffling "not signed
// by" reason, where the truth is a CA change.
func (v *validator) checkCA(b *Bundle) {
	c, leaf := v.c, v.c.Leaf
	selfLeaf := v.p.Layout.SelfSignedLeaf && pki.SelfSigned(leaf.Cert)
	for _, x := range c.CAs {
		b.CAs = append(b.CAs, x.Cert)
		v.checkStrength(x.File, x.Cert)
	}
	if len(b.CAs) == 0 && selfLeaf {
		b.CAs = []*x509.Certificate{leaf.Cert}
	}
	if len(b.CAs) == 0 && v.live != nil {
		b.CAs = v.live.CAs
	}
	if len(b.CAs) == 0 {
		v.fail("", "no cluster CA certificate in the bundle and none installed", fmt.Sprintf("add the cluster CA (%s)", orName(v.p.Layout.CAFile, "cluster.crt")))
		return
	}
	if len(c.CAs) > 0 || selfLeaf {
		v.checkCAChange(b.CAs, caFile(c, leaf), leaf.Cert, b.Intermediates)
	}
}

func orName(n, def string) string {
	if n == "" {
		return def
	}
	return n
}

func caFile(c *Candidate, leaf *Cert) string {
	if len(c.CAs) > 0 {
		return c.CAs[0].File
	}
	return leaf.File
}

// checkCAChange refuses a cluster CA other than the installed one, unless
// allowed, or unless it keeps continuity (Continuity).
func (v *validator) checkCAChange(cas []*x509.Certificate, file string, leaf *x509.Certificate, intermediates []*x509.Certificate) {
	if v.live == nil || len(v.live.CAs) == 0 || v.p.AllowCAChange || sameCerts(cas, v.live.CAs) || Continuity(cas, v.live.CAs, leaf, intermediates) {
		return
	}
	v.fail(file, fmt.Sprintf("cluster CA %q (sha256 %s) differs from the installed %q (sha256 %s); refusing a CA change",
		pki.Name(cas[0].Subject.String()), short(pki.Fingerprint(cas[0])),
		pki.Name(v.live.CAs[0].Subject.String()), short(pki.Fingerprint(v.live.CAs[0]))),
		"if this is a planned CA rotation, set allow_ca_change = true for this bundle")
}

// Continuity is the rule that lets a phased CA rotation (`ca rotate`)
// through without allow_ca_change: the new trust set keeps at least one
// CA the node trusts now, and the leaf (when the bundle has one) chains to
// such a kept CA, directly or through the bundle's intermediates. So a
// trust file bringing a new CA beside the old one is accepted, then a
// new-CA leaf under both, then the new CA alone; a lone unknown CA, or a
// leaf from a CA the node never trusted, is not. With intermediates the
// same holds of the roots: a new root beside the old (the leaf still
// under the old root's intermediate), then a leaf under the new root's
// intermediate, then the new root alone. A new intermediate under the
// same root is no CA change at all (the roots are the same).
func Continuity(cas, live []*x509.Certificate, leaf *x509.Certificate, intermediates []*x509.Certificate) bool {
	for _, c := range cas {
		for _, l := range live {
			if !c.Equal(l) {
				continue
			}
			if leaf == nil || ChainsTo(leaf, intermediates, c) {
				return true
			}
		}
	}
	return false
}

// ChainsTo reports whether cert is signed by root, directly or through a
// path of the given intermediates (each used at most once). Only
// signatures are followed: validity, usages and names are the validator's
// other checks.
func ChainsTo(cert *x509.Certificate, intermediates []*x509.Certificate, root *x509.Certificate) bool {
	used := make([]bool, len(intermediates))
	var walk func(c *x509.Certificate, depth int) bool
	walk = func(c *x509.Certificate, depth int) bool {
		if c.CheckSignatureFrom(root) == nil {
			return true
		}
		if depth >= len(intermediates) {
			return false
		}
		for i, in := range intermediates {
			if used[i] || c.CheckSignatureFrom(in) != nil {
				continue
			}
			used[i] = true
			ok := walk(in, depth+1)
			used[i] = false
			if ok {
				return true
			}
		}
		return false
	}
	return walk(cert, 0)
}

func short(fp string) string {
	if len(fp) > 23 {
		return fp[:23] + "…"
	}
	return fp
}

func sameCerts(a, b []*x509.Certificate) bool {
	fp := func(cs []*x509.Certificate) string {
		s := make([]string, len(cs))
		for i, c := range cs {
			s[i] = pki.Fingerprint(c)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return fp(a) == fp(b)
}

func (v *validator) checkLeaf(leaf *Cert, b *Bundle) {
	cert, now := leaf.Cert, v.p.Now
	selfLeaf := v.p.Layout.SelfSignedLeaf && pki.SelfSigned(cert)
	// Time first, on its own: an expired leaf should say "expired", not
	// also "does not chain".
	at, timeOK := now, true
	switch {
	case now.After(cert.NotAfter):
		v.fail(leaf.File, fmt.Sprintf("certificate expired on %s (%s ago)", Stamp(cert.NotAfter), Age(now.Sub(cert.NotAfter))),
			"issue a new one: certkeeper ca issue node ID")
		at, timeOK = cert.NotAfter, false
	case now.Before(cert.NotBefore):
		v.fail(leaf.File, fmt.Sprintf("certificate is not valid until %s (in %s)", Stamp(cert.NotBefore), Age(cert.NotBefore.Sub(now))),
			"check the clock on this node and on the CA host")
		at, timeOK = cert.NotBefore, false
	}
	if pki.IsCACert(cert) && !selfLeaf {
		v.fail(leaf.File, fmt.Sprintf("certificate %q is a CA certificate; a node's certificate must not be able to sign others", pki.Name(cert.Subject.String())),
			"issue a leaf certificate with basicConstraints CA:FALSE")
	}
	chainOK := false
	if len(b.CAs) > 0 {
		var ci x509.CertificateInvalidError
		err := pki.Verify(cert, b.Intermediates, b.CAs, at)
		if err != nil && (timeOK || !errors.As(err, &ci) || ci.Reason != x509.Expired) {
			v.fail(leaf.File, err.Error(), "")
		}
		chainOK = err == nil
	}
	refuse, warn := identity(cert, b.Intermediates, b.CAs, v.p.Layout, v.p.NodeID, at, chainOK)
	for _, f := range refuse {
		v.fail(leaf.File, f.reason, f.hint)
	}
	for _, f := range warn {
		v.warnings = append(v.warnings, Problem{File: leaf.File, Reason: f.reason, Hint: f.hint})
	}
	v.checkStrength(leaf.File, cert)
	if err := pki.WeakSignature(cert); err != nil && !selfLeaf {
		v.fail(leaf.File, "certificate is "+err.Error(), "")
	}
	if v.p.RefuseOlder && v.live != nil && v.live.Leaf != nil && Older(cert, v.live.Leaf) {
		v.fail(leaf.File, fmt.Sprintf("certificate is older than the installed one (issued %s, the installed one %s); refusing to go back",
			Stamp(cert.NotBefore), Stamp(v.live.Leaf.NotBefore)),
			"the source still holds an older bundle; to go back on purpose, use certkeeper rollback, or certkeeper install by hand")
	}
}

// checkCRL settles the bundle's CRL, for a layout that installs one: the
// candidate's must be signed by the bundle's cluster CA and current, and a
// pull must not take it back to a lower CRL number (that could un-revoke a
// node). Without one in the candidate, the live CRL stays while the
// bundle's CA still signs it. A leaf the CRL lists installs, with a
// warning: the node is retired, and check says so.
func (v *validator) checkCRL(b *Bundle) {
	l, c := v.p.Layout, v.c
	if l.CRLFile == "" || len(b.CAs) == 0 {
		return
	}
	if c.CRL == nil {
		if v.live != nil && len(v.live.CRLs) > 0 {
			for _, crl := range v.live.CRLs {
				if _, err := pki.CheckCRL(crl, b.CAs, v.p.Now); errors.Is(err, pki.ErrCRLIssuer) {
					return
				}
			}
			b.CRLs = v.live.CRLs
		}
		return
	}
	for _, crl := range c.CRL.CRLs {
		if _, err := pki.CheckCRL(crl, b.CAs, v.p.Now); err != nil {
			hint := "run `certkeeper ca crl --dir DIR` on the admin host, then push or let the nodes pull"
			if errors.Is(err, pki.ErrCRLIssuer) {
				hint = "the CRL must come from the CA that signed this bundle; publish the CA directory's cluster.crl"
			}
			if errors.Is(err, pki.ErrCRLFuture) {
				hint = "check the clock on this node and on the CA host"
			}
			v.fail(c.CRL.File, err.Error(), hint)
			return
		}
		if !v.p.RefuseOlder || v.live == nil {
			continue
		}
		for _, old := range v.live.CRLs {
			if bytes.Equal(old.RawIssuer, crl.RawIssuer) && pki.CRLNumber(crl).Cmp(pki.CRLNumber(old)) < 0 {
				v.fail(c.CRL.File, fmt.Sprintf("CRL number %s is lower than the installed CRL's %s; refusing to go back (it could un-revoke a node)",
					pki.CRLNumber(crl), pki.CRLNumber(old)), "the source still holds an older cluster.crl; publish the current one")
				return
			}
		}
	}
	b.CRLs = c.CRL.CRLs
	if b.Leaf != nil {
		if e := pki.RevocationIn(b.CRLs, b.Leaf); e != nil {
			v.warnings = append(v.warnings, Problem{File: c.Leaf.File,
				Reason: fmt.Sprintf("this node's certificate (serial %s) was revoked on %s, per the CRL", pki.Serial(b.Leaf), Stamp(e.RevocationTime)),
				Hint:   "issue the node again (certkeeper ca issue --force) if it is to rejoin"})
		}
	}
}

func (v *validator) checkStrength(file string, c *x509.Certificate) {
	if _, weak := pki.KeyStrength(c.PublicKey); weak != nil {
		v.fail(file, fmt.Sprintf("%q has a weak key: %v", pki.Name(c.Subject.String()), weak), "")
	}
}

// caOnly validates a bundle that installs only a CA (Clusterio's hosts).
func (v *validator) caOnly() *Bundle {
	c := v.c
	if c.Key != nil {
		v.fail(c.Key.File, "this layout installs only the CA certificate; a private key does not belong here", "do not copy the controller's key to hosts")
	}
	cas := c.CAs
	if c.Leaf != nil {
		if v.p.Layout.SelfSignedLeaf && pki.SelfSigned(c.Leaf.Cert) {
			cas = append(cas, *c.Leaf)
		} else {
			v.fail(c.Leaf.File, fmt.Sprintf("certificate %q is not a CA; this layout installs only the CA", pki.Name(c.Leaf.Cert.Subject.String())), "")
		}
	}
	if len(cas) == 0 {
		if len(c.Problems) == 0 {
			v.fail("", "no CA certificate in the bundle", "add the cluster CA")
		}
		return nil
	}
	b := &Bundle{}
	for _, x := range cas {
		b.CAs = append(b.CAs, x.Cert)
		v.checkStrength(x.File, x.Cert)
		if v.p.Now.After(x.Cert.NotAfter) {
			v.fail(x.File, fmt.Sprintf("CA certificate expired on %s", Stamp(x.Cert.NotAfter)), "")
		}
	}
	v.checkCAChange(b.CAs, cas[0].File, nil, nil)
	return b
}

// Stamp formats a time the way certkeeper prints one to an admin: in UTC,
// to the second, with the zone spelt out.
func Stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// Age formats a duration the way an admin reads it: "3d4h", "5m", "12s".
func Age(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		days := d / (24 * time.Hour)
		h := (d % (24 * time.Hour)) / time.Hour
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

// Plan turns a bundle into the layout's files, in canonical names and
// modes: the CA file, the leaf followed by its intermediates, the key in
// the encoding it arrived in, and the environment file if the layout has one.
func Plan(b *Bundle, l Layout) []File {
	var files []File
	cas := b.CAs
	if l.TrustFile() != "" && len(cas) > 0 {
		files = append(files, File{Name: l.TrustFile(), Data: pki.EncodeCertificates(cas...), Mode: l.CertMode})
	}
	if !l.CAOnly() {
		chain := append([]*x509.Certificate{b.Leaf}, b.Intermediates...)
		files = append(files,
			File{Name: l.CertFile, Data: pki.EncodeCertificates(chain...), Mode: l.CertMode},
			File{Name: l.KeyFile, Data: b.Key.PEM(), Mode: l.KeyMode})
	}
	if l.EnvFile != "" {
		files = append(files, File{Name: l.EnvFile, Data: l.EnvFileContent(), Mode: l.CertMode})
	}
	if l.CRLFile != "" && len(b.CRLs) > 0 {
		files = append(files, File{Name: l.CRLFile, Data: pki.EncodeCRLs(b.CRLs), Mode: l.CertMode})
	}
	return files
}

// ReadBundle parses a live generation's files back into a bundle, so it can
// serve as the trust anchor and key source for the next candidate.
func ReadBundle(files map[string][]byte, l Layout) (*Bundle, error) {
	b := &Bundle{}
	var errs []error
	if trust := l.TrustFile(); trust != "" {
		if data, ok := files[trust]; ok {
			c, err := pki.Parse(data)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", trust, err))
			} else {
				b.CAs = c.Certificates
			}
		}
	}
	if !l.CAOnly() {
		if data, ok := files[l.CertFile]; ok {
			c, err := pki.Parse(data)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %w", l.CertFile, err))
			case len(c.Certificates) == 0:
				errs = append(errs, fmt.Errorf("%s: no certificate", l.CertFile))
			default:
				b.Leaf, b.Intermediates = c.Certificates[0], c.Certificates[1:]
			}
		}
		if data, ok := files[l.KeyFile]; ok {
			c, err := pki.Parse(data)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %w", l.KeyFile, err))
			case len(c.Keys) == 0:
				errs = append(errs, fmt.Errorf("%s: no private key", l.KeyFile))
			default:
				b.Key = c.Keys[0]
			}
		}
		if l.SelfSignedLeaf && len(b.CAs) == 0 && b.Leaf != nil && pki.SelfSigned(b.Leaf) {
			b.CAs = []*x509.Certificate{b.Leaf}
		}
	}
	if l.CRLFile != "" {
		if data, ok := files[l.CRLFile]; ok {
			if b.CRLs, b.CRLErr = pki.ParseCRLs(data); b.CRLErr != nil {
				b.CRLErr = fmt.Errorf("%s: %w", l.CRLFile, b.CRLErr)
			}
		}
	}
	return b, errors.Join(errs...)
}

// Leafish returns the certificate that identifies the bundle: the leaf, or
// the CA for a CA-only bundle.
func (b *Bundle) Leafish() *x509.Certificate {
	if b.Leaf != nil {
		return b.Leaf
	}
	return b.CAs[0]
}

// Older reports whether certificate a was issued before b. A CA moves a
// new certificate's NotBefore back a little for clock skew (certkeeper's
// by at most 5 minutes, or a tenth of a short lifetime), so one issued just
// after the live certificate can look issued before it: differences within
// min(1 hour, a tenth of a's lifetime) do not count. The expiry says
// nothing: a newer certificate may well be shorter-lived (a 10-year
// self-signed one replaced by a 90-day one from a CA).
func Older(a, b *x509.Certificate) bool {
	tolerance := min(time.Hour, a.NotAfter.Sub(a.NotBefore)/10)
	return a.NotBefore.Before(b.NotBefore.Add(-tolerance))
}
