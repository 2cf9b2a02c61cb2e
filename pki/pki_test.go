package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Keys as the tools admins use write them: each must parse, keep its
// encoding, and match the certificate made for it.
func TestParseKeyFormatsFromOpenSSL(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name   string
		args   []string
		format pki.KeyFormat
		der    bool
	}{
		{"pkcs1.key", []string{"genrsa", "-traditional", "-out", "pkcs1.key", "2048"}, pki.KeyPKCS1, false},
		{"pkcs8.key", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "pkcs8.key"}, pki.KeyPKCS8, false},
		{"sec1.key", []string{"ecparam", "-name", "prime256v1", "-genkey", "-out", "sec1.key"}, pki.KeySEC1, false},
		{"ed25519.key", []string{"genpkey", "-algorithm", "ED25519", "-out", "ed25519.key"}, pki.KeyPKCS8, false},
		{"p384.key", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "p384.key"}, pki.KeyPKCS8, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testpki.OpenSSL(t, dir, c.args...)
			testpki.OpenSSL(t, dir, "req", "-new", "-x509", "-key", c.name, "-subj", "/CN=n1", "-days", "1", "-out", c.name+".crt")
			kc, err := pki.Parse(read(t, dir, c.name))
			if err != nil {
				t.Fatalf("Parse(%s): %v", c.name, err)
			}
			if len(kc.Keys) != 1 || kc.Keys[0].Format != c.format {
				t.Fatalf("Parse(%s) = %d keys, format %v; want 1 key in %v", c.name, len(kc.Keys), kc.Keys, c.format)
			}
			cc, err := pki.Parse(read(t, dir, c.name+".crt"))
			if err != nil || len(cc.Certificates) != 1 {
				t.Fatalf("Parse(cert) = %v, %v", cc, err)
			}
			if !pki.KeyMatches(cc.Certificates[0], kc.Keys[0].Signer) {
				t.Fatal("key does not match its own certificate")
			}
			// The encoding survives a round trip, so a daemon that reads only
			// PKCS#1 still gets PKCS#1.
			if got := pem.EncodeToMemory(&pem.Block{Type: string(c.format), Bytes: kc.Keys[0].DER}); string(got) != string(kc.Keys[0].PEM()) {
				t.Fatal("PEM() changed the key encoding")
			}
		})
	}
}

func TestParseDER(t *testing.T) {
	dir := t.TempDir()
	testpki.OpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
	testpki.OpenSSL(t, dir, "req", "-new", "-x509", "-key", "k.pem", "-subj", "/CN=n1", "-days", "1", "-out", "c.pem")
	testpki.OpenSSL(t, dir, "x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der")
	testpki.OpenSSL(t, dir, "pkey", "-in", "k.pem", "-outform", "DER", "-out", "k.der")
	c, err := pki.Parse(read(t, dir, "c.der"))
	if err != nil || len(c.Certificates) != 1 || !c.DER {
		t.Fatalf("DER certificate: %+v, %v", c, err)
	}
	k, err := pki.Parse(read(t, dir, "k.der"))
	if err != nil || len(k.Keys) != 1 || !k.DER {
		t.Fatalf("DER key: %+v, %v", k, err)
	}
	if !pki.KeyMatches(c.Certificates[0], k.Keys[0].Signer) {
		t.Fatal("DER key does not match DER certificate")
	}
}

func TestParseRefusals(t *testing.T) {
	dir := t.TempDir()
	testpki.OpenSSL(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:secret", "-out", "enc8.key")
	testpki.OpenSSL(t, dir, "genrsa", "-traditional", "-aes128", "-passout", "pass:secret", "-out", "enc1.key", "2048")
	testpki.OpenSSL(t, dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "csr.key", "-subj", "/CN=n1", "-out", "n1.csr")
	testpki.OpenSSL(t, dir, "genpkey", "-algorithm", "X25519", "-out", "x25519.key")

	cases := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"empty", nil, pki.ErrEmpty, "empty"},
		{"whitespace", []byte("\n \n"), pki.ErrEmpty, "empty"},
		{"too large", make([]byte, pki.MaxFileSize+1), pki.ErrTooLarge, "larger than"},
		{"encrypted pkcs8", read(t, dir, "enc8.key"), pki.ErrEncryptedKey, "openssl pkey"},
		{"encrypted pkcs1", read(t, dir, "enc1.key"), pki.ErrEncryptedKey, "openssl pkey"},
		{"csr", read(t, dir, "n1.csr"), pki.ErrUnsupported, "signing request"},
		{"x25519", read(t, dir, "x25519.key"), pki.ErrUnsupported, "X25519"},
		{"openssh key", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), pki.ErrUnsupported, "SSH"},
		{"garbage", []byte("hello, this is not a certificate"), pki.ErrUnsupported, "neither PEM"},
		{"truncated pem", []byte("-----BEGIN CERTIFICATE-----\nMIIB"), pki.ErrUnsupported, "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := pki.Parse(c.data)
			if !errors.Is(err, c.want) {
				t.Fatalf("Parse = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not mention %q", err, c.msg)
			}
		})
	}
}

func TestParseCombinedFile(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	inter := ca.Issue(t, "intermediate", testpki.Options{CA: true})
	leaf := inter.Issue(t, "node-1", testpki.Options{})
	data := append(testpki.CertPEM(leaf.Cert, inter.Cert), leaf.KeyPEM(t)...)
	c, err := pki.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificates) != 2 || len(c.Keys) != 1 {
		t.Fatalf("got %d certificates and %d keys, want 2 and 1", len(c.Certificates), len(c.Keys))
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: now.Add(24 * time.Hour)})
	other := testpki.NewCA(t, "other", testpki.Options{})
	inter := ca.Issue(t, "intermediate", testpki.Options{CA: true})
	notCA := ca.Issue(t, "not-a-ca", testpki.Options{})
	cases := []struct {
		name          string
		leaf          *x509.Certificate
		intermediates []*x509.Certificate
		roots         []*x509.Certificate
		at            time.Time
		want          string
	}{
		{"direct", ca.Issue(t, "n1", testpki.Options{}).Cert, nil, []*x509.Certificate{ca.Cert}, now, ""},
		{"through intermediate", inter.Issue(t, "n1", testpki.Options{}).Cert, []*x509.Certificate{inter.Cert}, []*x509.Certificate{ca.Cert}, now, ""},
		{"missing intermediate", inter.Issue(t, "n1", testpki.Options{}).Cert, nil, []*x509.Certificate{ca.Cert}, now, "not signed by the cluster CA"},
		{"other CA", other.Issue(t, "n1", testpki.Options{}).Cert, nil, []*x509.Certificate{ca.Cert}, now, `issuer is "CN=other,O=certkeeper test"`},
		{"intermediate is not a CA", notCA.Issue(t, "n1", testpki.Options{}).Cert, []*x509.Certificate{notCA.Cert}, []*x509.Certificate{ca.Cert}, now, "cannot sign"},
		{"CA expired", ca.Issue(t, "n1", testpki.Options{NotAfter: now.Add(48 * time.Hour)}).Cert, nil, []*x509.Certificate{ca.Cert}, now.Add(36 * time.Hour), "not valid"},
		{"no roots", ca.Issue(t, "n1", testpki.Options{}).Cert, nil, nil, now, "no cluster CA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := pki.Verify(c.leaf, c.intermediates, c.roots, c.at)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify = %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// reign's signing certificate is a v1 certificate with no basic constraints;
// it must still work as the cluster CA, as it does for `openssl verify`.
func TestVerifyReignV1Root(t *testing.T) {
	dir := t.TempDir()
	testpki.ReignRecipe(t, dir, "1")
	root, err := pki.Parse(read(t, dir, "signing.crt"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := pki.Parse(read(t, dir, "node.1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	r, n := root.Certificates[0], node.Certificates[0]
	if r.Version != 1 || !pki.IsCACert(r) || !pki.SelfSigned(r) {
		t.Fatalf("signing.crt: version %d, IsCACert %v, SelfSigned %v; want a v1 self-signed CA", r.Version, pki.IsCACert(r), pki.SelfSigned(r))
	}
	if pki.IsCACert(n) {
		t.Fatal("node.1.crt counted as a CA")
	}
	if err := pki.Verify(n, nil, []*x509.Certificate{r}, time.Now()); err != nil {
		t.Fatalf("Verify(reign node): %v", err)
	}
	testpki.OpenSSL(t, dir, "verify", "-CAfile", "signing.crt", "node.1.crt")
	if !pki.NamesNode(n, "1") || pki.NamesNode(n, "2") {
		t.Fatal("NamesNode does not follow the CN")
	}
}

func TestNamesNode(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	c := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"Node1.Example.com"}, IPs: []string{"10.0.0.5", "::1"}}).Cert
	for id, want := range map[string]bool{
		"node-1":            true,
		"node1.example.com": true,
		"10.0.0.5":          true,
		"0:0::1":            true,
		"node-2":            false,
		"10.0.0.6":          false,
		"":                  false,
	} {
		if got := pki.NamesNode(c, id); got != want {
			t.Errorf("NamesNode(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestKeyStrength(t *testing.T) {
	for kt, want := range map[testpki.KeyType]string{
		testpki.ECDSA256: "ECDSA P-256",
		testpki.ECDSA384: "ECDSA P-384",
		testpki.Ed25519:  "Ed25519",
		testpki.RSA2048:  "RSA 2048",
	} {
		desc, weak := pki.KeyStrength(testpki.NewKey(t, kt).Public())
		if desc != want || weak != nil {
			t.Errorf("%s: KeyStrength = %q, %v; want %q, nil", kt, desc, weak, want)
		}
	}
	if _, weak := pki.KeyStrength(testpki.NewKey(t, testpki.RSA1024).Public()); weak == nil || !strings.Contains(weak.Error(), "2048") {
		t.Errorf("RSA 1024 not refused: %v", weak)
	}
}

// Describe must agree with what openssl prints for the same certificate.
func TestDescribeAgreesWithOpenSSL(t *testing.T) {
	dir := t.TempDir()
	testpki.GlowRecipe(t, dir, "server1.example.com")
	c, err := pki.Parse(read(t, dir, "server1.cer"))
	if err != nil {
		t.Fatal(err)
	}
	info := pki.Describe(c.Certificates[0])
	fp := testpki.OpenSSL(t, dir, "x509", "-in", "server1.cer", "-noout", "-fingerprint", "-sha256")
	if !strings.Contains(fp, info.SHA256) {
		t.Errorf("fingerprint %s not in openssl's %q", info.SHA256, fp)
	}
	serial := testpki.OpenSSL(t, dir, "x509", "-in", "server1.cer", "-noout", "-serial")
	if info.Serial != "65" || strings.TrimSpace(serial) != "serial=65" {
		t.Errorf("serial %q, openssl %q; want 65 (decimal 101)", info.Serial, serial)
	}
	if info.CommonName != "server1.example.com" || info.Key != "RSA 2048" || info.IsCA || info.SANs() != "DNS:localhost, IP:127.0.0.1" {
		t.Errorf("Describe = %+v", info)
	}
}

// A SAN that repeats the CN (what most recipes make) is named once in
// "certificate is for …" messages.
func TestNodeNamesOnce(t *testing.T) {
	ca := testpki.NewCA(t, "ca", testpki.Options{})
	leaf := ca.Issue(t, "node2", testpki.Options{DNS: []string{"node2", "node2.example"}, IPs: []string{"127.0.0.2"}})
	if got := strings.Join(pki.NodeNames(leaf.Cert), ","); got != "node2,node2.example,127.0.0.2" {
		t.Errorf("NodeNames: %s", got)
	}
}
