// Package testpki mints certificates for tests: a cluster CA, intermediates
// and leaves with exactly the property a test needs (expired, wrong name,
// weak key, a CA where a leaf belongs).
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyType names a key algorithm.
type KeyType string

const (
	ECDSA256 KeyType = "ecdsa-p256"
	ECDSA384 KeyType = "ecdsa-p384"
	Ed25519  KeyType = "ed25519"
	RSA2048  KeyType = "rsa-2048"
	RSA1024  KeyType = "rsa-1024"
)

// NewKey makes a private key.
func NewKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case ECDSA256, "":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSA384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA1024:
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	default:
		t.Fatalf("testpki: unknown key type %q", kt)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Options shape a certificate. The zero value is a one-hour leaf valid from a
// minute ago, with an ECDSA P-256 key.
type Options struct {
	Key       KeyType
	NotBefore time.Time
	NotAfter  time.Time
	DNS       []string
	IPs       []string
	CA        bool
	// Reuse signs a certificate for an existing key (renewal with the live key).
	Reuse crypto.Signer

	// KeyUsage and ExtKeyUsage replace the defaults (digitalSignature,
	// serverAuth and clientAuth for a leaf; keyCertSign and cRLSign for a
	// CA) when set; NoKeyUsage and NoExtKeyUsage leave the extensions out.
	KeyUsage      x509.KeyUsage
	ExtKeyUsage   []x509.ExtKeyUsage
	NoKeyUsage    bool
	NoExtKeyUsage bool
	// Name constraints for a CA.
	PermittedDNS, ExcludedDNS []string

	// selfLeaf is a self-signed certificate made like `openssl req -x509`
	// makes it: no key usage unless asked.
	selfLeaf bool
}

// Pair is a certificate with its private key.
type Pair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed cluster CA.
func NewCA(t testing.TB, name string, o Options) *Pair {
	t.Helper()
	o.CA = true
	return sign(t, name, o, nil)
}

// Issue signs a leaf (or, with o.CA, an intermediate) named cn.
func (p *Pair) Issue(t testing.TB, cn string, o Options) *Pair {
	t.Helper()
	return sign(t, cn, o, p)
}

// SelfSigned makes a self-signed leaf-like certificate, as Clusterio's
// `openssl req -x509` recipe does.
func SelfSigned(t testing.TB, cn string, o Options) *Pair {
	t.Helper()
	o.selfLeaf = true
	return sign(t, cn, o, nil)
}

func sign(t testing.TB, cn string, o Options, parent *Pair) *Pair {
	t.Helper()
	key := o.Reuse
	if key == nil {
		key = NewKey(t, o.Key)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Minute)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(time.Hour)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"certkeeper test"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		DNSNames:              o.DNS,
		BasicConstraintsValid: true,
		IsCA:                  o.CA,
	}
	for _, s := range o.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	switch {
	case o.CA && o.selfLeaf:
	case o.CA:
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	default:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	if o.KeyUsage != 0 {
		tmpl.KeyUsage = o.KeyUsage
	}
	if o.ExtKeyUsage != nil {
		tmpl.ExtKeyUsage = o.ExtKeyUsage
	}
	if o.NoKeyUsage {
		tmpl.KeyUsage = 0
	}
	if o.NoExtKeyUsage {
		tmpl.ExtKeyUsage = nil
	}
	tmpl.PermittedDNSDomains, tmpl.ExcludedDNSDomains = o.PermittedDNS, o.ExcludedDNS
	issuerCert, issuerKey := tmpl, key
	if parent != nil {
		issuerCert, issuerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Pair{Cert: cert, Key: key}
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a key as PKCS#8 PEM.
func KeyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM of the pair's certificate.
func (p *Pair) CertPEM() []byte { return CertPEM(p.Cert) }

// KeyPEM of the pair's key, PKCS#8.
func (p *Pair) KeyPEM(t testing.TB) []byte { return KeyPEM(t, p.Key) }

// WriteFile writes data under dir and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}
