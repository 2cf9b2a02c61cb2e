package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/youmark/pkcs8"
)

// KeyType names a key algorithm and size the CA can generate, in the words
// of the command line (`--key-type ecdsa-p256`).
type KeyType string

// The key types certkeeper issues. ECDSA P-256 is the default: every TLS
// stack in these clusters speaks it, and it is fast to make and to use.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	Ed25519   KeyType = "ed25519"
	RSA2048   KeyType = "rsa-2048"
	RSA4096   KeyType = "rsa-4096"

	DefaultKeyType = ECDSAP256
)

// KeyTypes lists the types GenerateKey makes, the default first.
func KeyTypes() []KeyType { return []KeyType{ECDSAP256, ECDSAP384, Ed25519, RSA2048, RSA4096} }

// ParseKeyType accepts a key type's name; "" means the default.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return DefaultKeyType, nil
	}
	for _, t := range KeyTypes() {
		if strings.EqualFold(s, string(t)) {
			return t, nil
		}
	}
	names := make([]string, 0, 5)
	for _, t := range KeyTypes() {
		names = append(names, string(t))
	}
	return "", fmt.Errorf("unknown key type %q; use one of %s", s, strings.Join(names, ", "))
}

// GenerateKey makes a private key of type t.
func GenerateKey(t KeyType, random io.Reader) (crypto.Signer, error) {
	switch t {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), random)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), random)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(random)
		return k, err
	case RSA2048:
		return rsa.GenerateKey(random, 2048)
	case RSA4096:
		return rsa.GenerateKey(random, 4096)
	}
	_, err := ParseKeyType(string(t))
	return nil, err
}

// KeyTypeOf names a public key's type as GenerateKey would ("rsa-3072" for
// sizes certkeeper does not generate but accepts in a CSR).
func KeyTypeOf(pub crypto.PublicKey) KeyType {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256
		case elliptic.P384():
			return ECDSAP384
		}
		return KeyType("ecdsa-" + strings.ToLower(k.Curve.Params().Name))
	case ed25519.PublicKey:
		return Ed25519
	case *rsa.PublicKey:
		return KeyType(fmt.Sprintf("rsa-%d", k.N.BitLen()))
	}
	return KeyType(fmt.Sprintf("%T", pub))
}

// MarshalKey encodes a private key as unencrypted PKCS#8 PEM ("PRIVATE
// KEY"), the encoding `openssl genpkey` writes and every daemon in these
// clusters reads.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: string(KeyPKCS8), Bytes: der}), nil
}

// keyEncryption protects the CA key at rest: PBES2 with PBKDF2-HMAC-SHA256
// and AES-256-CBC, which `openssl pkey` decrypts. 600,000 iterations is
// OWASP's 2023 figure for PBKDF2-SHA256; it costs a few hundred
// milliseconds per command, paid once per invocation, which is nothing next
// to what a guessed CA passphrase would cost.
var keyEncryption = &pkcs8.Opts{
	Cipher: pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{
		SaltSize:       16,
		IterationCount: 600_000,
		HMACHash:       crypto.SHA256,
	},
}

// ErrWrongPassphrase is returned when an encrypted key does not decrypt.
var ErrWrongPassphrase = errors.New("wrong passphrase")

// EncryptKey encodes a private key as encrypted PKCS#8 PEM ("ENCRYPTED
// PRIVATE KEY").
func EncryptKey(k crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("empty passphrase")
	}
	der, err := pkcs8.MarshalPrivateKey(k, passphrase, keyEncryption)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// KeyIsEncrypted reports whether PEM data holds an encrypted private key
// (PKCS#8 or OpenSSL's legacy Proc-Type encryption).
func KeyIsEncrypted(data []byte) bool {
	b, _ := pem.Decode(data)
	return b != nil && (b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] == "4,ENCRYPTED")
}

// DecryptKey parses a private key that may be encrypted PKCS#8. An
// unencrypted key is parsed as Parse would; passphrase is then ignored.
func DecryptKey(data, passphrase []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
		c, err := Parse(data)
		if err != nil {
			return nil, err
		}
		if len(c.Keys) != 1 || len(c.Certificates) != 0 {
			return nil, fmt.Errorf("%w: expected exactly one private key", ErrUnsupported)
		}
		return c.Keys[0].Signer, nil
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: no passphrase given", ErrEncryptedKey)
	}
	k, err := decryptPKCS8(b.Bytes, passphrase)
	if err != nil {
		if strings.Contains(err.Error(), "incorrect password") {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("encrypted private key does not parse: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: private key of type %T", ErrUnsupported, k)
	}
	return s, nil
}

// decryptPKCS8 guards the library's CBC decryption, which panics on a
// ciphertext that is not a whole number of blocks (a truncated file).
func decryptPKCS8(der, passphrase []byte) (k any, err error) {
	defer func() {
		if r := recover(); r != nil {
			k, err = nil, fmt.Errorf("corrupted encrypted key (%v)", r)
		}
	}()
	return pkcs8.ParsePKCS8PrivateKey(der, passphrase)
}
