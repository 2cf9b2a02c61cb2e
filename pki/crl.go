package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// MaxCRLEntries bounds the revoked certificates a CRL may list. A
// cluster's CRL lists a handful; the bound keeps a hostile one (a 1 MiB
// file is some 30,000 entries) from costing a node more than a lookup table.
const MaxCRLEntries = 100_000

// ParseCRL reads one certificate revocation list, PEM ("X509 CRL") or DER,
// within MaxFileSize and MaxCRLEntries. It checks only the form; CheckCRL
// judges it against a CA and a time.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrEmpty
	}
	der := data
	if bytes.Contains(data, []byte("-----BEGIN")) {
		b, rest := pem.Decode(data)
		if b == nil || b.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: no PEM \"X509 CRL\" block", ErrUnsupported)
		}
		if r, _ := pem.Decode(rest); r != nil {
			return nil, fmt.Errorf("%w: more than one PEM block in a CRL file", ErrUnsupported)
		}
		der = b.Bytes
	}
	return parseCRLDER(der)
}

// MaxCRLsInFile bounds the CRLs one CRL file may hold: one per CA the
// nodes trust, which is two during a CA rotation.
const MaxCRLsInFile = 4

// ParseCRLs reads a CRL file that holds one CRL or, during a CA rotation,
// one per trusted CA: PEM "X509 CRL" blocks one after another (nginx's
// ssl_crl, openssl -CRLfile and etcd read them so), or one DER CRL. The
// whole file is bounded by MaxFileSize and MaxCRLsInFile, each CRL by
// ParseCRL's checks.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrEmpty
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := parseCRLDER(data)
		if err != nil {
			return nil, err
		}
		return []*x509.RevocationList{crl}, nil
	}
	var out []*x509.RevocationList
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: a PEM %q block in a CRL file (only \"X509 CRL\" blocks belong there)", ErrUnsupported, b.Type)
		}
		if len(out) == MaxCRLsInFile {
			return nil, fmt.Errorf("%w: more than %d CRLs in one CRL file", ErrUnsupported, MaxCRLsInFile)
		}
		crl, err := parseCRLDER(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d of the file: %w", len(out)+1, err)
		}
		out = append(out, crl)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM \"X509 CRL\" block", ErrUnsupported)
	}
	return out, nil
}

// EncodeCRLs is the PEM form of several CRLs in one file, in order.
func EncodeCRLs(crls []*x509.RevocationList) []byte {
	var out []byte
	for _, c := range crls {
		out = append(out, EncodeCRL(c)...)
	}
	return out
}

// RevocationIn looks cert up in the CRL of its issuer among crls (nil when
// none lists it).
func RevocationIn(crls []*x509.RevocationList, cert *x509.Certificate) *x509.RevocationListEntry {
	for _, crl := range crls {
		if e := Revocation(crl, cert); e != nil {
			return e
		}
	}
	return nil
}

// EarliestCRL is the CRL of crls that goes stale first (nil for none).
func EarliestCRL(crls []*x509.RevocationList) *x509.RevocationList {
	var first *x509.RevocationList
	for _, c := range crls {
		if first == nil || c.NextUpdate.Before(first.NextUpdate) {
			first = c
		}
	}
	return first
}

func parseCRLDER(der []byte) (*x509.RevocationList, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("CRL does not parse: %w", err)
	}
	if len(crl.RevokedCertificateEntries) > MaxCRLEntries {
		return nil, fmt.Errorf("CRL lists %d certificates; the limit is %d", len(crl.RevokedCertificateEntries), MaxCRLEntries)
	}
	if crl.NextUpdate.IsZero() {
		return nil, errors.New("CRL has no nextUpdate; certkeeper needs one to know when it goes stale")
	}
	if !crl.NextUpdate.After(crl.ThisUpdate) {
		return nil, fmt.Errorf("CRL's nextUpdate %s is not after its thisUpdate %s", crl.NextUpdate.UTC().Format(time.RFC3339), crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// EncodeCRL is the PEM form certkeeper installs a CRL in (what nginx's
// ssl_crl, etcd's --client-crl-file and openssl -CRLfile read).
func EncodeCRL(crl *x509.RevocationList) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
}

// CRL problems a caller may tell apart.
var (
	ErrCRLIssuer  = errors.New("CRL is not signed by the cluster CA")
	ErrCRLExpired = errors.New("CRL is past its nextUpdate")
	ErrCRLFuture  = errors.New("CRL is not valid yet")
)

// CheckCRL judges a CRL against the cluster CAs at now: it must be signed
// by one of them and be between its thisUpdate and nextUpdate. It returns
// the CA that signed it.
func CheckCRL(crl *x509.RevocationList, cas []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	var signer *x509.Certificate
	for _, ca := range cas {
		if !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
			continue
		}
		if err := crl.CheckSignatureFrom(ca); err == nil {
			signer = ca
			break
		}
	}
	if signer == nil {
		names := "none installed"
		if len(cas) > 0 {
			names = fmt.Sprintf("%q", Name(cas[0].Subject.String()))
		}
		return nil, fmt.Errorf("%w (issuer %q; cluster CA %s)", ErrCRLIssuer, Name(crl.Issuer.String()), names)
	}
	switch {
	case now.After(crl.NextUpdate):
		return signer, fmt.Errorf("%w (%s)", ErrCRLExpired, crl.NextUpdate.UTC().Format("2006-01-02 15:04:05 UTC"))
	case now.Add(5 * time.Minute).Before(crl.ThisUpdate):
		return signer, fmt.Errorf("%w: thisUpdate is %s; check this node's clock", ErrCRLFuture, crl.ThisUpdate.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	return signer, nil
}

// Revocation looks cert up in crl: the entry, or nil when it is not listed.
// Only a CRL from cert's issuer can list it.
func Revocation(crl *x509.RevocationList, cert *x509.Certificate) *x509.RevocationListEntry {
	if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) {
		return nil
	}
	for i, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return &crl.RevokedCertificateEntries[i]
		}
	}
	return nil
}

// CRLNumber is a CRL's number, or zero when it has none.
func CRLNumber(crl *x509.RevocationList) *big.Int {
	if crl.Number == nil {
		return new(big.Int)
	}
	return crl.Number
}
