// Package pki holds certkeeper's x509 knowledge: parsing what admins actually
// have on disk, matching keys to certificates, verifying chains to a cluster
// CA and describing certificates in words an admin reads.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// MaxFileSize bounds every certificate or key input. Real bundles are a few
// KiB; a limit keeps a hostile or mistaken input (a log file, a disk image)
// from being read into memory whole.
const MaxFileSize = 1 << 20

// Errors a caller may want to tell apart. Each is wrapped with the reason.
var (
	ErrEmpty        = errors.New("file is empty")
	ErrTooLarge     = fmt.Errorf("file is larger than %d bytes", MaxFileSize)
	ErrEncryptedKey = errors.New("private key is encrypted")
	ErrUnsupported  = errors.New("unsupported content")
)

// KeyFormat is the encoding a private key arrived in. certkeeper writes a key
// back in the encoding it came in, because some daemons only read one.
type KeyFormat string

const (
	KeyPKCS1 KeyFormat = "RSA PRIVATE KEY" // PKCS#1, openssl genrsa (1.x)
	KeyPKCS8 KeyFormat = "PRIVATE KEY"     // PKCS#8, openssl genpkey, cfssl
	KeySEC1  KeyFormat = "EC PRIVATE KEY"  // SEC 1, openssl ecparam -genkey
)

// Label names the encoding as admins know it.
func (f KeyFormat) Label() string {
	switch f {
	case KeyPKCS1:
		return "PKCS#1"
	case KeySEC1:
		return "SEC 1"
	}
	return "PKCS#8"
}

// Key is a private key with the encoding it was found in.
type Key struct {
	Signer crypto.Signer
	Format KeyFormat
	DER    []byte
}

// PEM returns the key as a PEM block in its original encoding.
func (k *Key) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: string(k.Format), Bytes: k.DER})
}

// Contents is everything one file holds: files often combine a chain, or a
// certificate and its key.
type Contents struct {
	Certificates []*x509.Certificate
	Keys         []*Key
	// CRLs are certificate revocation lists (a bundle's CRL file).
	CRLs []*x509.RevocationList
	// DER is true when the file was binary DER rather than PEM.
	DER bool
}

// Parse reads certificates and private keys from PEM or DER data. Unknown
// PEM blocks and anything certkeeper must not install (CSRs, encrypted or
// SSH keys) are errors that say what the block is and what to do with it.
func Parse(data []byte) (*Contents, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrEmpty
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		return parseDER(data)
	}
	var c Contents
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if err := c.addBlock(block); err != nil {
			return nil, err
		}
	}
	if len(c.Certificates) == 0 && len(c.Keys) == 0 && len(c.CRLs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate or private key found (a truncated or corrupted file?)", ErrUnsupported)
	}
	return &c, nil
}

func (c *Contents) addBlock(b *pem.Block) error {
	if b.Headers["Proc-Type"] == "4,ENCRYPTED" || b.Type == "ENCRYPTED PRIVATE KEY" {
		return fmt.Errorf("%w: certkeeper installs keys a daemon can read without a passphrase; decrypt it first with `openssl pkey -in FILE -out FILE.plain` and keep the encrypted copy offline", ErrEncryptedKey)
	}
	switch b.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("certificate does not parse: %w", err)
		}
		c.Certificates = append(c.Certificates, cert)
	case "RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY":
		k, err := parseKeyDER(KeyFormat(b.Type), b.Bytes)
		if err != nil {
			return err
		}
		c.Keys = append(c.Keys, k)
	case "EC PARAMETERS":
		// openssl ecparam -genkey writes the curve before the key; the key
		// block names the curve again, so this one carries nothing we need.
	case "TRUSTED CERTIFICATE":
		return fmt.Errorf("%w: OpenSSL \"TRUSTED CERTIFICATE\" block; convert it with `openssl x509 -in FILE -out FILE.pem`", ErrUnsupported)
	case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		return fmt.Errorf("%w: a certificate signing request, not a certificate; sign it first (certkeeper ca sign)", ErrUnsupported)
	case "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY":
		return fmt.Errorf("%w: %q is not a TLS private key (an SSH or DSA key?)", ErrUnsupported, b.Type)
	case "X509 CRL":
		if len(c.CRLs) == MaxCRLsInFile {
			return fmt.Errorf("%w: more than %d CRLs in one CRL file", ErrUnsupported, MaxCRLsInFile)
		}
		crl, err := parseCRLDER(b.Bytes)
		if err != nil {
			return err
		}
		c.CRLs = append(c.CRLs, crl)
	default:
		return fmt.Errorf("%w: PEM block %q", ErrUnsupported, b.Type)
	}
	return nil
}

// parseDER accepts a DER certificate (or concatenated chain) or a DER private
// key, since openssl -outform DER and Windows exports produce them.
func parseDER(data []byte) (*Contents, error) {
	if certs, err := x509.ParseCertificates(data); err == nil && len(certs) > 0 {
		return &Contents{Certificates: certs, DER: true}, nil
	}
	for _, f := range []KeyFormat{KeyPKCS8, KeyPKCS1, KeySEC1} {
		if k, err := parseKeyDER(f, data); err == nil {
			return &Contents{Keys: []*Key{k}, DER: true}, nil
		}
	}
	if crl, err := parseCRLDER(data); err == nil {
		return &Contents{CRLs: []*x509.RevocationList{crl}, DER: true}, nil
	}
	return nil, fmt.Errorf("%w: neither PEM (no -----BEGIN line) nor a DER certificate or private key", ErrUnsupported)
}

func parseKeyDER(f KeyFormat, der []byte) (*Key, error) {
	var (
		k   any
		err error
	)
	switch f {
	case KeyPKCS1:
		k, err = x509.ParsePKCS1PrivateKey(der)
	case KeySEC1:
		k, err = x509.ParseECPrivateKey(der)
	case KeyPKCS8:
		k, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", strings.ToLower(string(f)), err)
	}
	if _, ok := k.(*ecdh.PrivateKey); ok {
		return nil, fmt.Errorf("%w: an X25519 key can not sign; TLS needs an ECDSA, Ed25519 or RSA key", ErrUnsupported)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: private key of type %T", ErrUnsupported, k)
	}
	return &Key{Signer: s, Format: f, DER: der}, nil
}

// EncodeCertificates returns certificates as concatenated PEM blocks.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}
