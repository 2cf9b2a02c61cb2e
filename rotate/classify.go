// Package rotate decides a certificate bundle's life on a node: which file
// is what, whether a candidate may be installed, when to renew, and how a
// new generation replaces the live one without a reader ever seeing a
// certificate with the wrong key.
package rotate

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"

	"github.com/certkeeper/certkeeper/pki"
)

// Input is one file offered for a bundle: its name as the admin gave it
// (only used in messages) and its content.
type Input struct {
	Name string
	Data []byte
}

// Cert is a certificate and the file it came from.
type Cert struct {
	File string
	Cert *x509.Certificate
}

// Key is a private key and the file it came from.
type Key struct {
	File string
	Key  *pki.Key
}

// CRL is a certificate revocation list and the file it came from.
type CRL struct {
	File string
	// CRLs are the file's CRLs: one, or one per trusted CA during a CA
	// rotation.
	CRLs []*x509.RevocationList
}

// Candidate is a set of inputs sorted by what they are, whatever their
// names: the cluster CA, the leaf with its intermediates, and the key.
type Candidate struct {
	CAs           []Cert
	Leaf          *Cert
	Intermediates []Cert
	Key           *Key
	// CRL is the newest certificate revocation list among the inputs (by
	// CRL number); a bundle carries at most one CRL file.
	CRL *CRL
	// Extra holds certificates that are none of the above (a second leaf).
	Extra []Cert
	// Problems found while reading: files that do not parse, or hold what
	// a bundle must not.
	Problems []Problem
}

// Problem is one reason a candidate can not be installed, about one file.
type Problem struct {
	File   string
	Reason string
	Hint   string
	Err    error
}

func (p Problem) Error() string {
	s := p.Reason
	if p.File != "" {
		s = p.File + ": " + s
	}
	if p.Hint != "" {
		s += " (" + p.Hint + ")"
	}
	return s
}

func (p Problem) Unwrap() error { return p.Err }

// Classify reads every input and sorts certificates and keys by content:
// the key is the private key; the leaf is the certificate whose public key
// matches it; self-signed CA certificates are the cluster CA; other CA
// certificates are intermediates. A bundle without a key (a renewed leaf
// for the live key) takes its single non-CA certificate as the leaf.
func Classify(inputs []Input) *Candidate {
	c := &Candidate{}
	var certs []Cert
	seen := map[string]bool{}
	for _, in := range inputs {
		if len(in.Data) > pki.MaxFileSize {
			c.Problems = append(c.Problems, Problem{File: in.Name, Reason: fmt.Sprintf("file is %d bytes; the limit is %d (1 MiB)", len(in.Data), pki.MaxFileSize), Err: pki.ErrTooLarge})
			continue
		}
		parsed, err := pki.Parse(in.Data)
		if err != nil {
			c.Problems = append(c.Problems, Problem{File: in.Name, Reason: err.Error(), Err: err})
			continue
		}
		for _, cert := range parsed.Certificates {
			fp := pki.Fingerprint(cert)
			if seen[fp] {
				continue
			}
			seen[fp] = true
			certs = append(certs, Cert{File: in.Name, Cert: cert})
		}
		if crls := newestPerIssuer(parsed.CRLs); len(crls) > 0 {
			// The CRL file is told apart by content, like the rest: a
			// CRL from another issuer than the bundle's CAs is left to
			// validation, which names it. Of two CRL files, the one with
			// the higher number wins.
			if c.CRL == nil || maxCRLNumber(crls).Cmp(maxCRLNumber(c.CRL.CRLs)) > 0 {
				c.CRL = &CRL{File: in.Name, CRLs: crls}
			}
		}
		for _, k := range parsed.Keys {
			if c.Key != nil {
				if pki.KeyMatchesKey(c.Key.Key.Signer, k.Signer) {
					continue
				}
				c.Problems = append(c.Problems, Problem{File: in.Name,
					Reason: fmt.Sprintf("a second private key (the first is in %s); a bundle holds exactly one", c.Key.File),
					Hint:   "remove the key that does not belong to the certificate"})
				continue
			}
			c.Key = &Key{File: in.Name, Key: k}
		}
	}

	// The leaf: the certificate for the key. Without a key, the one
	// certificate that is not a CA.
	if c.Key != nil {
		for i, ct := range certs {
			if pki.KeyMatches(ct.Cert, c.Key.Key.Signer) {
				c.Leaf = &certs[i]
				break
			}
		}
	}
	if c.Leaf == nil {
		var leaves []int
		for i, ct := range certs {
			if !pki.IsCACert(ct.Cert) {
				leaves = append(leaves, i)
			}
		}
		if len(leaves) == 1 {
			c.Leaf = &certs[leaves[0]]
		}
	}
	for i, ct := range certs {
		switch {
		case c.Leaf != nil && &certs[i] == c.Leaf:
			// A self-signed leaf is its own CA (Clusterio); validation
			// decides whether the layout allows that.
		case pki.IsCACert(ct.Cert) && pki.SelfSigned(ct.Cert):
			c.CAs = append(c.CAs, ct)
		case pki.IsCACert(ct.Cert):
			c.Intermediates = append(c.Intermediates, ct)
		default:
			c.Extra = append(c.Extra, ct)
		}
	}
	return c
}

// Files names the input files a candidate drew on, for messages.
func (c *Candidate) Files() string {
	var names []string
	add := func(n string) {
		for _, x := range names {
			if x == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, x := range c.CAs {
		add(x.File)
	}
	if c.Leaf != nil {
		add(c.Leaf.File)
	}
	for _, x := range c.Intermediates {
		add(x.File)
	}
	if c.Key != nil {
		add(c.Key.File)
	}
	if c.CRL != nil {
		add(c.CRL.File)
	}
	return strings.Join(names, ", ")
}

// newestPerIssuer keeps, of one file's CRLs, the highest-numbered one of
// each issuer, in the file's order.
func newestPerIssuer(crls []*x509.RevocationList) []*x509.RevocationList {
	var out []*x509.RevocationList
next:
	for _, crl := range crls {
		for i, o := range out {
			if bytes.Equal(o.RawIssuer, crl.RawIssuer) {
				if pki.CRLNumber(crl).Cmp(pki.CRLNumber(o)) > 0 {
					out[i] = crl
				}
				continue next
			}
		}
		out = append(out, crl)
	}
	return out
}

func maxCRLNumber(crls []*x509.RevocationList) *big.Int {
	m := new(big.Int)
	for _, c := range crls {
		if n := pki.CRLNumber(c); n.Cmp(m) > 0 {
			m = n
		}
	}
	return m
}
