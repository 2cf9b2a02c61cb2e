package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// KeyMatches reports whether the private key belongs to the certificate.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	return HasPublicKey(cert, key.Public())
}

// HasPublicKey reports whether the certificate carries the public key pub
// (a CSR's, say).
func HasPublicKey(cert *x509.Certificate, pub crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	k, ok := cert.PublicKey.(equaler)
	return ok && k.Equal(pub)
}

// KeyMatchesKey reports whether two private keys are the same key.
func KeyMatchesKey(a, b crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := a.Public().(equaler)
	return ok && pub.Equal(b.Public())
}

// SameKey reports whether two certificates carry the same public key.
func SameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// SelfSigned reports whether the certificate is signed by its own key. It
// checks the signature rather than comparing names, and does not ask for
// CA:TRUE, so reign's v1 signing certificate
// (`openssl x509 -req -signkey`) counts.
func SelfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return false
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// IsCACert reports whether a certificate may act as a cluster CA: a CA by its
// basic constraints, or a self-signed v1 certificate, which predates them.
func IsCACert(c *x509.Certificate) bool {
	if c.BasicConstraintsValid {
		return c.IsCA
	}
	return c.Version < 3 && SelfSigned(c)
}

// Verify checks that leaf chains to one of roots through intermediates at
// time now. Any extended key usage is accepted: cluster certificates are used
// for both ends of mutual TLS and older recipes (reign's) set none.
func Verify(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, now time.Time) error {
	if len(roots) == 0 {
		return errors.New("no cluster CA to verify against")
	}
	rp := x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	ip := x509.NewCertPool()
	for _, c := range intermediates {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rp,
		Intermediates: ip,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return explainVerify(err, leaf, roots, now)
	}
	return nil
}

func explainVerify(err error, leaf *x509.Certificate, roots []*x509.Certificate, now time.Time) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		names := make([]string, len(roots))
		for i, r := range roots {
			names[i] = fmt.Sprintf("%q", Name(r.Subject.String()))
		}
		return fmt.Errorf("not signed by the cluster CA: issuer is %q, cluster CA is %s: %w",
			Name(leaf.Issuer.String()), strings.Join(names, ", "), err)
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Reason == x509.Expired && ci.Cert != leaf {
		return fmt.Errorf("chain certificate %q is not valid at %s (valid %s to %s): %w",
			Name(ci.Cert.Subject.String()), now.UTC().Format(time.RFC3339),
			ci.Cert.NotBefore.UTC().Format(time.RFC3339), ci.Cert.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return fmt.Errorf("does not chain to the cluster CA: %w", err)
}

// Name returns a distinguished name, or a placeholder for an empty one, so
// error messages never show "".
func Name(s string) string {
	if s == "" {
		return "(empty subject)"
	}
	return s
}

// NamesNode reports whether the certificate names id in its common name or
// a subject alternative name (the reign rule, widened to SANs). DNS names
// compare without case; IP addresses compare by value, so "::1" matches
// "0:0::1".
func NamesNode(c *x509.Certificate, id string) bool {
	return id != "" && (c.Subject.CommonName == id || SANNamesNode(c, id))
}

// NodeNames lists the names a certificate answers to, each once (the CN
// is usually repeated as a SAN), for error messages.
func NodeNames(c *x509.Certificate) []string {
	var n []string
	add := func(s string) {
		if s != "" && !slices.Contains(n, s) {
			n = append(n, s)
		}
	}
	add(c.Subject.CommonName)
	for _, d := range c.DNSNames {
		add(d)
	}
	for _, ip := range c.IPAddresses {
		add(ip.String())
	}
	for _, u := range c.URIs {
		add(u.String())
	}
	return n
}

// KeyStrength describes a public key ("RSA 2048", "ECDSA P-256", "Ed25519")
// and reports a reason when it is too weak to install.
func KeyStrength(pub crypto.PublicKey) (desc string, weak error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		desc = fmt.Sprintf("RSA %d", bits)
		if bits < 2048 {
			weak = fmt.Errorf("RSA key of %d bits; at least 2048 are required (issue a new key, e.g. certkeeper ca issue --key-type rsa-2048, or ecdsa-p256)", bits)
		}
	case *ecdsa.PublicKey:
		desc = "ECDSA " + k.Curve.Params().Name
		if k.Curve.Params().BitSize < 256 {
			weak = fmt.Errorf("ECDSA key on %s; at least P-256 is required", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		desc = "Ed25519"
	default:
		desc = fmt.Sprintf("%T", pub)
		weak = fmt.Errorf("unsupported public key type %T", pub)
	}
	return desc, weak
}

// WeakSignature reports a reason when the certificate is signed with a
// broken hash (MD2, MD5 or SHA-1).
func WeakSignature(c *x509.Certificate) error {
	switch c.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA:
		return fmt.Errorf("signed with %s; MD5 signatures can be forged, re-issue it with SHA-256", c.SignatureAlgorithm)
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return fmt.Errorf("signed with %s; SHA-1 signatures can be forged, re-issue it with SHA-256", c.SignatureAlgorithm)
	case x509.UnknownSignatureAlgorithm:
		return errors.New("signed with an unknown algorithm")
	}
	return nil
}

// Fingerprint is the SHA-256 of the certificate's DER, as `openssl x509
// -fingerprint -sha256` prints it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return colonHex(sum[:])
}

// Serial formats a serial number as openssl does: colon-separated hex.
func Serial(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	if len(b) == 0 {
		return "00"
	}
	return colonHex(b)
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var s strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			s.WriteByte(':')
		}
		s.WriteString(h[i : i+2])
	}
	return s.String()
}

// Info describes a certificate for status output and error messages.
type Info struct {
	Subject     string    `json:"subject"`
	CommonName  string    `json:"common_name,omitempty"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	URIs        []string  `json:"uris,omitempty"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Key         string    `json:"key"`
	// KeyType is the key's type as --key-type and key_type spell it
	// ("ecdsa-p256"); Key is its description ("ECDSA P-256").
	KeyType    KeyType `json:"key_type"`
	Signature  string  `json:"signature"`
	IsCA       bool    `json:"is_ca"`
	SelfSigned bool    `json:"self_signed"`
	SHA256     string  `json:"sha256_fingerprint"`
}

// Describe summarises a certificate.
func Describe(c *x509.Certificate) Info {
	key, _ := KeyStrength(c.PublicKey)
	i := Info{
		Subject:    Name(c.Subject.String()),
		CommonName: c.Subject.CommonName,
		DNSNames:   c.DNSNames,
		Issuer:     Name(c.Issuer.String()),
		Serial:     Serial(c),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
		Key:        key,
		KeyType:    KeyTypeOf(c.PublicKey),
		Signature:  c.SignatureAlgorithm.String(),
		IsCA:       IsCACert(c),
		SelfSigned: SelfSigned(c),
		SHA256:     Fingerprint(c),
	}
	for _, ip := range c.IPAddresses {
		i.IPAddresses = append(i.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		i.URIs = append(i.URIs, u.String())
	}
	return i
}

// SANs returns the subject alternative names as openssl prints them
// ("DNS:a, IP Address:10.0.0.1"), shortened to "DNS:a, IP:10.0.0.1".
func (i Info) SANs() string {
	var s []string
	for _, d := range i.DNSNames {
		s = append(s, "DNS:"+d)
	}
	for _, ip := range i.IPAddresses {
		s = append(s, "IP:"+ip)
	}
	for _, u := range i.URIs {
		s = append(s, "URI:"+u)
	}
	return strings.Join(s, ", ")
}
