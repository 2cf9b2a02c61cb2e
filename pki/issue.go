package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Issuer is a CA that signs: its certificate, its key, and the
// intermediates between it and the root it chains to (none when the CA is
// itself the root, as `certkeeper ca init` makes it).
type Issuer struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// CAProfile describes a cluster CA to create.
type CAProfile struct {
	Name      string // the subject's CN: the cluster's name
	Key       crypto.Signer
	NotBefore time.Time
	NotAfter  time.Time
	// MaxPathLen is how many intermediate CAs may follow: 0 (the default)
	// lets the CA sign only leaves; -1 sets no limit.
	MaxPathLen int
}

// Backdate is how far before "now" a certificate's validity starts, so a
// node whose clock runs a little behind the admin host's accepts it at once.
// A short-lived certificate is backdated by at most a tenth of its lifetime
// (BackdateFor): five minutes before a 30-second certificate would put its
// renewal time in the past the moment it is issued.
const Backdate = 5 * time.Minute

// BackdateFor is how far a certificate of lifetime is backdated: Backdate,
// or a tenth of the lifetime when that is less.
func BackdateFor(lifetime time.Duration) time.Duration {
	return min(Backdate, lifetime/10)
}

// ErrCAExpired means the CA can no longer issue anything.
var ErrCAExpired = errors.New("the cluster CA has expired")

// NewCA makes a self-signed cluster CA certificate: CA:TRUE with the path
// length asked for, key usage certSign and cRLSign only, and subject and
// authority key identifiers (the same, for a root) so chain builders pick
// the right issuer when a CA is renewed with a new key.
func NewCA(p CAProfile, random io.Reader) (*x509.Certificate, error) {
	if p.Name == "" {
		return nil, errors.New("the CA needs a name")
	}
	if !p.NotAfter.After(p.NotBefore) {
		return nil, fmt.Errorf("CA validity ends (%s) before it starts (%s)", p.NotAfter.UTC().Format(time.RFC3339), p.NotBefore.UTC().Format(time.RFC3339))
	}
	serial, err := NewSerial(random)
	if err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(p.Key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: p.Name},
		NotBefore:             p.NotBefore.UTC().Truncate(time.Second),
		NotAfter:              p.NotAfter.UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            p.MaxPathLen,
		MaxPathLenZero:        p.MaxPathLen == 0,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
	}
	der, err := x509.CreateCertificate(random, tmpl, tmpl, p.Key.Public(), p.Key)
	if err != nil {
		return nil, fmt.Errorf("sign the CA certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// LeafProfile describes a node or control-service certificate.
type LeafProfile struct {
	CommonName   string // the node id (reign's rule: the CN names the node)
	Organization string // the cluster's name, for people reading the subject
	DNSNames     []string
	IPAddresses  []net.IP
	PublicKey    crypto.PublicKey
	NotBefore    time.Time
	NotAfter     time.Time
}

// Issue signs a leaf for mutual TLS: CA:FALSE, key usage digitalSignature
// (plus keyEncipherment for RSA keys, which RSA key exchange in TLS 1.2
// needs), extended key usage serverAuth and clientAuth (every node is both
// ends), a random 128-bit serial, and key identifiers.
func (is *Issuer) Issue(p LeafProfile, random io.Reader) (*x509.Certificate, error) {
	if len(is.Cert.SubjectKeyId) == 0 {
		return nil, errors.New("the CA certificate has no subject key identifier; certkeeper signs only with CAs that have one")
	}
	if _, weak := KeyStrength(p.PublicKey); weak != nil {
		return nil, weak
	}
	serial, err := NewSerial(random)
	if err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(p.PublicKey)
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := p.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	subject := pkix.Name{CommonName: p.CommonName}
	if p.Organization != "" {
		subject.Organization = []string{p.Organization}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             p.NotBefore.UTC().Truncate(time.Second),
		NotAfter:              p.NotAfter.UTC().Truncate(time.Second),
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              p.DNSNames,
		IPAddresses:           p.IPAddresses,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(random, tmpl, is.Cert, p.PublicKey, is.Key)
	if err != nil {
		return nil, fmt.Errorf("sign the certificate for %q: %w", p.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// NewSerial returns a random positive serial of up to 128 bits: unguessable
// (so a chosen-prefix collision can not be prepared) and, in practice,
// unique; the CA database still refuses a repeat.
func NewSerial(random io.Reader) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for range 8 {
		n, err := randInt(random, limit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("random serial: the random source keeps returning zero")
}

func randInt(random io.Reader, limit *big.Int) (*big.Int, error) {
	b := make([]byte, (limit.BitLen()+6)/8)
	if _, err := io.ReadFull(random, b); err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(b)
	return n.Mod(n, limit), nil
}

// SubjectKeyID derives a key identifier as RFC 7093 section 2 method 1
// does: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// LeafValidity is the window of a leaf issued at now for lifetime: started
// BackdateFor(lifetime) earlier for clock skew, and never outside the CA's own window,
// since a leaf that outlives its CA fails verification from that day on.
// capped reports that the lifetime was cut short by the CA's expiry.
func LeafValidity(now time.Time, lifetime time.Duration, ca *x509.Certificate) (notBefore, notAfter time.Time, capped bool, err error) {
	if lifetime <= 0 {
		return time.Time{}, time.Time{}, false, fmt.Errorf("validity must be positive, got %s", lifetime)
	}
	if !now.Before(ca.NotAfter) {
		return time.Time{}, time.Time{}, false, fmt.Errorf("%w on %s; it can not issue certificates any more (make a new CA with `certkeeper ca init` in another directory and issue every node again)",
			ErrCAExpired, ca.NotAfter.UTC().Format(time.DateTime+" MST"))
	}
	if now.Before(ca.NotBefore) {
		return time.Time{}, time.Time{}, false, fmt.Errorf("the cluster CA is not valid until %s; is this host's clock right? (now %s)",
			ca.NotBefore.UTC().Format(time.DateTime+" MST"), now.UTC().Format(time.DateTime+" MST"))
	}
	notBefore = now.Add(-BackdateFor(lifetime))
	if notBefore.Before(ca.NotBefore) {
		notBefore = ca.NotBefore
	}
	notAfter = now.Add(lifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter, capped = ca.NotAfter, true
	}
	return notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second), capped, nil
}

// Revoked is one entry of a CRL.
type Revoked struct {
	Serial *big.Int
	At     time.Time
	Reason int // RFC 5280 CRLReason; 0 (unspecified) is left out
}

// CRL signs a certificate revocation list: the given entries, numbered
// number, valid from thisUpdate until nextUpdate.
func (is *Issuer) CRL(entries []Revoked, number *big.Int, thisUpdate, nextUpdate time.Time, random io.Reader) ([]byte, error) {
	if len(is.Cert.SubjectKeyId) == 0 {
		return nil, errors.New("the CA certificate has no subject key identifier, which a CRL needs")
	}
	if !nextUpdate.After(thisUpdate) {
		return nil, errors.New("the CRL's next update must come after this update")
	}
	list := &x509.RevocationList{
		Number:     number,
		ThisUpdate: thisUpdate.UTC().Truncate(time.Second),
		NextUpdate: nextUpdate.UTC().Truncate(time.Second),
	}
	for _, e := range entries {
		list.RevokedCertificateEntries = append(list.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.At.UTC().Truncate(time.Second),
			ReasonCode:     e.Reason,
		})
	}
	der, err := x509.CreateRevocationList(random, list, is.Cert, is.Key)
	if err != nil {
		return nil, fmt.Errorf("sign the CRL: %w", err)
	}
	return der, nil
}

// Reasons are the CRLReason codes an admin may give, by the names openssl
// prints (RFC 5280 section 5.3.1).
var Reasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// ReasonName is the name of a CRLReason code.
func ReasonName(code int) string {
	for n, c := range Reasons {
		if c == code {
			return n
		}
	}
	return fmt.Sprintf("reason %d", code)
}
