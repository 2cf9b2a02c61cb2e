package rotate

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// DefaultCAWarnShare is the share of the cluster CA's lifetime left at
// which ca list, ca renew and check warn that it needs replacing: 20%, a
// year of a five-year CA, enough for a phased `ca rotate`.
const DefaultCAWarnShare = 0.2

// CRLWarnShare is the share of an installed CRL's validity left at which
// check warns: `ca renew` on its hourly timer refreshes the CRL at 40%
// left (its --within), so a CRL under a quarter has missed that.
const CRLWarnShare = 0.25

// ParseShare reads a share of a lifetime as an admin writes one: "20%" or
// "0.2", strictly between 0 and 1 (0% turns the warning off: "0%").
func ParseShare(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a share of a lifetime; write it as \"20%%\" or 0.2", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f >= 1 || f != f {
		return 0, fmt.Errorf("%q is outside 0%% to 100%% (exclusive)", s)
	}
	return f, nil
}

// CAExpiryHealth judges the cluster CA's own expiry: a warning when the
// first CA that is not expired has share of its life left or less
// (share 0: DefaultCAWarnShare; below 0: never), critical once every CA
// has expired. The fix is always a CA rotation.
func CAExpiryHealth(now time.Time, cas []*x509.Certificate, share float64) (Health, string) {
	if share == 0 {
		share = DefaultCAWarnShare
	}
	if len(cas) == 0 {
		return OK, ""
	}
	// The CA that lasts longest is the one the cluster relies on (during a
	// rotation, the new one).
	ca := cas[0]
	for _, c := range cas[1:] {
		if c.NotAfter.After(ca.NotAfter) {
			ca = c
		}
	}
	name := pki.Name(ca.Subject.String())
	left, life := ca.NotAfter.Sub(now), ca.NotAfter.Sub(ca.NotBefore)
	switch {
	case left <= 0:
		return Critical, fmt.Sprintf("cluster CA %q expired on %s; replace it: certkeeper ca rotate on the admin host", name, Stamp(ca.NotAfter))
	case share > 0 && life > 0 && float64(left) <= share*float64(life):
		return Warning, fmt.Sprintf("cluster CA %q expires on %s (in %s, %.0f%% of its life left); replace it in time: certkeeper ca rotate on the admin host",
			name, Stamp(ca.NotAfter), Age(left), 100*float64(left)/float64(life))
	}
	return OK, ""
}

// CRLInfo describes an installed CRL.
type CRLInfo struct {
	File       string    `json:"file"`
	Number     string    `json:"number"`
	Issuer     string    `json:"issuer"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Entries    int       `json:"entries"`
	// CRLs is how many CRLs the file holds when more than one (one per
	// trusted CA during a CA rotation); the rest describes the one that
	// goes stale first.
	CRLs int `json:"crls,omitempty"`
}

func crlInfo(crl *x509.RevocationList, file string) CRLInfo {
	return CRLInfo{File: file, Number: pki.CRLNumber(crl).String(), Issuer: pki.Name(crl.Issuer.String()),
		ThisUpdate: crl.ThisUpdate.UTC(), NextUpdate: crl.NextUpdate.UTC(), Entries: len(crl.RevokedCertificateEntries)}
}

// Finding is one health judgement with its words.
type Finding struct {
	Health Health
	Text   string
}

// CRLHealth judges an installed CRL file for check: each CRL signed by a
// cluster CA, current (a warning when the one that goes stale first has
// CRLWarnShare of its validity left, critical past a nextUpdate, when
// daemons that check it refuse every client), and whether the CRL of this
// node's issuer lists its own certificate. During a CA rotation the file
// holds one CRL per CA.
func CRLHealth(now time.Time, crls []*x509.RevocationList, cas []*x509.Certificate, leaf *x509.Certificate, file string) []Finding {
	var out []Finding
	bad := false
	for _, crl := range crls {
		_, err := pki.CheckCRL(crl, cas, now)
		switch {
		case errors.Is(err, pki.ErrCRLIssuer):
			return []Finding{{Critical, fmt.Sprintf("%s: %v; publish the CA's cluster.crl again (certkeeper ca crl) and push", file, err)}}
		case errors.Is(err, pki.ErrCRLExpired):
			bad = true
			out = append(out, Finding{Critical, fmt.Sprintf("%s: CRL expired on %s (%s ago); daemons that check it refuse every client: run certkeeper ca crl on the admin host, then push or let the nodes pull",
				file, Stamp(crl.NextUpdate), Age(now.Sub(crl.NextUpdate)))})
		case err != nil:
			bad = true
			out = append(out, Finding{Critical, fmt.Sprintf("%s: %v", file, err)})
		}
	}
	if first := pki.EarliestCRL(crls); first != nil && !bad {
		left, life := first.NextUpdate.Sub(now), first.NextUpdate.Sub(first.ThisUpdate)
		if float64(left) <= CRLWarnShare*float64(life) {
			out = append(out, Finding{Warning, fmt.Sprintf("%s: CRL expires on %s (in %s) and has not been refreshed; run certkeeper ca crl (or ca renew) on the admin host, then push",
				file, Stamp(first.NextUpdate), Age(left))})
		}
	}
	if leaf != nil {
		if e := pki.RevocationIn(crls, leaf); e != nil {
			reason := ""
			if e.ReasonCode != 0 {
				reason = " (" + pki.ReasonName(e.ReasonCode) + ")"
			}
			out = append(out, Finding{Critical, fmt.Sprintf("this node's certificate was revoked on %s%s: serial %s is in %s; peers that check the CRL refuse it (issue the node again with certkeeper ca issue --force to rejoin)",
				Stamp(e.RevocationTime), reason, pki.Serial(leaf), file)})
		}
	}
	return out
}
