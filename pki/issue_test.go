package pki_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

func newIssuer(t testing.TB, kt pki.KeyType, nb, na time.Time) *pki.Issuer {
	t.Helper()
	key, err := pki.GenerateKey(kt, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(pki.CAProfile{Name: "cluster", Key: key, NotBefore: nb, NotAfter: na}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Issuer{Cert: ca, Key: key}
}

func TestKeyTypes(t *testing.T) {
	for _, kt := range pki.KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			if testing.Short() && kt == pki.RSA4096 {
				t.Skip("slow key")
			}
			k, err := pki.GenerateKey(kt, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if got := pki.KeyTypeOf(k.Public()); got != kt {
				t.Fatalf("KeyTypeOf = %s", got)
			}
			if parsed, err := pki.ParseKeyType(strings.ToUpper(string(kt))); err != nil || parsed != kt {
				t.Fatalf("ParseKeyType: %v %v", parsed, err)
			}
			data, err := pki.MarshalKey(k)
			if err != nil {
				t.Fatal(err)
			}
			c, err := pki.Parse(data)
			if err != nil || len(c.Keys) != 1 || c.Keys[0].Format != pki.KeyPKCS8 || !pki.KeyMatchesKey(c.Keys[0].Signer, k) {
				t.Fatalf("marshalled key does not parse back: %v", err)
			}
		})
	}
	if kt, _ := pki.ParseKeyType(""); kt != pki.ECDSAP256 {
		t.Fatalf("default key type %s", kt)
	}
	_, err := pki.ParseKeyType("rsa-1024")
	if err == nil || !strings.Contains(err.Error(), "use one of ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-4096") {
		t.Fatalf("unknown key type: %v", err)
	}
	if _, err := pki.GenerateKey("dsa", rand.Reader); err == nil {
		t.Fatal("GenerateKey made a dsa key")
	}
}

// An encrypted CA key round-trips, refuses a wrong passphrase, and is
// what openssl decrypts with the same passphrase.
func TestEncryptKey(t *testing.T) {
	k, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	enc, err := pki.EncryptKey(k, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !pki.KeyIsEncrypted(enc) || !bytes.Contains(enc, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("not an encrypted PKCS#8 key:\n%s", enc)
	}
	if _, err := pki.Parse(enc); !errors.Is(err, pki.ErrEncryptedKey) {
		t.Fatalf("Parse of an encrypted key: %v", err)
	}
	got, err := pki.DecryptKey(enc, []byte("correct horse"))
	if err != nil || !pki.KeyMatchesKey(got, k) {
		t.Fatalf("decrypt: %v", err)
	}
	if _, err := pki.DecryptKey(enc, []byte("wrong")); !errors.Is(err, pki.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := pki.DecryptKey(enc, nil); !errors.Is(err, pki.ErrEncryptedKey) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := pki.EncryptKey(k, nil); err == nil {
		t.Fatal("encrypted with an empty passphrase")
	}
	// A truncated ciphertext is an error, not a panic in the library.
	b, _ := pem.Decode(enc)
	b.Bytes = b.Bytes[:len(b.Bytes)-3]
	if _, err := pki.DecryptKey(pem.EncodeToMemory(b), []byte("correct horse")); err == nil {
		t.Fatal("a truncated key decrypted")
	}
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "ca.key", enc, 0o600)
	out := testpki.OpenSSL(t, dir, "pkey", "-in", "ca.key", "-passin", "pass:correct horse", "-pubout")
	pub, _ := pem.Decode([]byte(out))
	want, _ := x509.MarshalPKIXPublicKey(k.Public())
	if pub == nil || !bytes.Equal(pub.Bytes, want) {
		t.Fatalf("openssl decrypted another key:\n%s", out)
	}
	// An unencrypted key passes through DecryptKey too.
	plain, _ := pki.MarshalKey(k)
	if got, err := pki.DecryptKey(plain, nil); err != nil || !pki.KeyMatchesKey(got, k) {
		t.Fatalf("plain key: %v", err)
	}
}

func TestNewCAProfile(t *testing.T) {
	now := time.Now()
	is := newIssuer(t, pki.ECDSAP256, now, now.Add(24*time.Hour))
	ca := is.Cert
	switch {
	case !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero:
		t.Errorf("basic constraints: CA=%v pathlen=%d zero=%v", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero)
	case ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("key usage %v", ca.KeyUsage)
	case len(ca.SubjectKeyId) != 20 || !bytes.Equal(ca.SubjectKeyId, ca.AuthorityKeyId):
		t.Errorf("SKI %x AKI %x", ca.SubjectKeyId, ca.AuthorityKeyId)
	case ca.Subject.CommonName != "cluster" || !pki.SelfSigned(ca):
		t.Errorf("subject %s", ca.Subject)
	}
	for _, e := range ca.Extensions {
		if e.Id.Equal([]int{2, 5, 29, 19}) && !e.Critical {
			t.Error("basicConstraints is not critical")
		}
	}
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	unlimited, err := pki.NewCA(pki.CAProfile{Name: "x", Key: key, NotBefore: now, NotAfter: now.Add(time.Hour), MaxPathLen: -1}, rand.Reader)
	if err != nil || unlimited.MaxPathLen != -1 {
		t.Fatalf("path length -1: %v %d", err, unlimited.MaxPathLen)
	}
	if _, err := pki.NewCA(pki.CAProfile{Name: "x", Key: key, NotBefore: now, NotAfter: now}, rand.Reader); err == nil {
		t.Fatal("a CA valid for no time")
	}
}

func TestLeafProfile(t *testing.T) {
	now := time.Now()
	for _, kt := range []pki.KeyType{pki.ECDSAP256, pki.ECDSAP384, pki.Ed25519, pki.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			is := newIssuer(t, kt, now.Add(-time.Hour), now.Add(24*time.Hour))
			key, _ := pki.GenerateKey(kt, rand.Reader)
			leaf, err := is.Issue(pki.LeafProfile{
				CommonName: "node-1", Organization: "cluster", DNSNames: []string{"n1.example.com"},
				IPAddresses: []net.IP{net.ParseIP("10.0.0.5")}, PublicKey: key.Public(),
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			}, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if _, ok := key.Public().(*rsa.PublicKey); ok {
				wantKU |= x509.KeyUsageKeyEncipherment
			}
			switch {
			case leaf.IsCA || !leaf.BasicConstraintsValid:
				t.Error("leaf is a CA")
			case leaf.KeyUsage != wantKU:
				t.Errorf("key usage %v, want %v", leaf.KeyUsage, wantKU)
			case len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth:
				t.Errorf("EKU %v", leaf.ExtKeyUsage)
			case len(leaf.SubjectKeyId) != 20 || !bytes.Equal(leaf.AuthorityKeyId, is.Cert.SubjectKeyId):
				t.Errorf("SKI %x AKI %x", leaf.SubjectKeyId, leaf.AuthorityKeyId)
			case leaf.Subject.CommonName != "node-1" || leaf.Subject.Organization[0] != "cluster":
				t.Errorf("subject %s", leaf.Subject)
			case leaf.SerialNumber.BitLen() > 128 || leaf.SerialNumber.Sign() <= 0:
				t.Errorf("serial %x", leaf.SerialNumber)
			case !pki.NamesNode(leaf, "n1.example.com") || !pki.NamesNode(leaf, "10.0.0.5"):
				t.Errorf("names %v", pki.NodeNames(leaf))
			}
			if err := pki.Verify(leaf, nil, []*x509.Certificate{is.Cert}, now); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("weak key refused", func(t *testing.T) {
		is := newIssuer(t, pki.ECDSAP256, now.Add(-time.Hour), now.Add(time.Hour))
		weak := testpki.NewKey(t, testpki.RSA1024)
		if _, err := is.Issue(pki.LeafProfile{CommonName: "x", PublicKey: weak.Public(), NotBefore: now, NotAfter: now.Add(time.Minute)}, rand.Reader); err == nil || !strings.Contains(err.Error(), "1024 bits") {
			t.Fatalf("weak key: %v", err)
		}
	})
}

func TestNewSerialIsRandomAndPositive(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		s, err := pki.NewSerial(rand.Reader)
		if err != nil || s.Sign() <= 0 || s.BitLen() > 128 || seen[s.String()] {
			t.Fatalf("serial %v: %v", s, err)
		}
		seen[s.String()] = true
	}
	if _, err := pki.NewSerial(bytes.NewReader(make([]byte, 1000))); err == nil {
		t.Fatal("a zero random source gave a serial")
	}
}

func TestLeafValidity(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ca := func(nb, na time.Time) *x509.Certificate { return &x509.Certificate{NotBefore: nb, NotAfter: na} }
	cases := []struct {
		name         string
		ca           *x509.Certificate
		lifetime     time.Duration
		nb, na       time.Time
		capped       bool
		errSubstring string
	}{
		{"ordinary", ca(now.Add(-365*day), now.Add(3650*day)), 90 * day, now.Add(-pki.Backdate), now.Add(90 * day), false, ""},
		{"capped at the CA's expiry", ca(now.Add(-365*day), now.Add(10*day)), 90 * day, now.Add(-pki.Backdate), now.Add(10 * day), true, ""},
		{"30 seconds: backdated by a tenth of it, not 5 minutes", ca(now.Add(-365*day), now.Add(3650*day)), 30 * time.Second, now.Add(-3 * time.Second), now.Add(30 * time.Second), false, ""},
		{"50 minutes: backdated 5 minutes", ca(now.Add(-365*day), now.Add(3650*day)), 50 * time.Minute, now.Add(-5 * time.Minute), now.Add(50 * time.Minute), false, ""},
		{"backdating stops at the CA's start", ca(now.Add(-time.Minute), now.Add(day)), time.Hour, now.Add(-time.Minute), now.Add(time.Hour), false, ""},
		{"CA expired", ca(now.Add(-365*day), now.Add(-time.Second)), day, time.Time{}, time.Time{}, false, "has expired"},
		{"CA expires now", ca(now.Add(-365*day), now), day, time.Time{}, time.Time{}, false, "has expired"},
		{"CA not yet valid", ca(now.Add(time.Hour), now.Add(day)), day, time.Time{}, time.Time{}, false, "clock"},
		{"no lifetime", ca(now.Add(-day), now.Add(day)), 0, time.Time{}, time.Time{}, false, "positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nb, na, capped, err := pki.LeafValidity(now, c.lifetime, c.ca)
			if c.errSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), c.errSubstring) {
					t.Fatalf("error %v, want %q", err, c.errSubstring)
				}
				return
			}
			if err != nil || !nb.Equal(c.nb) || !na.Equal(c.na) || capped != c.capped {
				t.Fatalf("got %s..%s capped=%v err=%v, want %s..%s capped=%v", nb, na, capped, err, c.nb, c.na, c.capped)
			}
		})
	}
}

func csrFor(t testing.TB, key crypto.Signer, cn string, dns []string, ips []string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	for _, s := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseCSR(t *testing.T) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	der := csrFor(t, key, "node-1", nil, nil)
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	for _, ok := range [][]byte{der, pemCSR, pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der})} {
		if _, err := pki.ParseCSR(ok); err != nil {
			t.Fatal(err)
		}
	}
	ca := testpki.NewCA(t, "ca", testpki.Options{})
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"empty":       {nil, "no input"},
		"too large":   {bytes.Repeat([]byte("A"), pki.MaxCSRSize+1), "larger than"},
		"two blocks":  {append(append([]byte{}, pemCSR...), pemCSR...), "more than one PEM block"},
		"certificate": {ca.CertPEM(), `"CERTIFICATE"`},
		"text":        {[]byte("hello\n"), `: not a PEM CERTIFICATE REQUEST block or a DER CSR (6 bytes, starting with "hello\n")`},
		"long text":   {[]byte("this is not a request at all\n"), `(29 bytes, starting with "this is not a re"…)`},
		"broken DER":  {der[:len(der)-10], `not a PEM CERTIFICATE REQUEST block or a DER CSR (` + strconv.Itoa(len(der)-10) + ` bytes, starting with "0`},
		"bad PEM DER": {[]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "the PEM CERTIFICATE REQUEST block does not hold a request"},
		"truncated":   {pemCSR[:len(pemCSR)-40], "does not decode"},
	} {
		if _, err := pki.ParseCSR(c.data); err == nil || !errors.Is(err, pki.ErrBadCSR) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// What is not DER at all gets no ASN.1 decoder internals; broken DER
	// keeps the decoder's reason.
	if _, err := pki.ParseCSR([]byte("hello\n")); err == nil || strings.Contains(err.Error(), "asn1") || strings.Contains(err.Error(), "tags don't match") {
		t.Errorf("text: %v", err)
	}
	if _, err := pki.ParseCSR(der[:len(der)-10]); err == nil || !strings.Contains(err.Error(), "): x509: ") && !strings.Contains(err.Error(), "): asn1: ") {
		t.Errorf("broken DER lost its reason: %v", err)
	}
}

func TestCheckCSR(t *testing.T) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	policy := pki.NamePolicy{CommonName: "node-1", DNSNames: []string{"n1.example.com"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}}
	parse := func(der []byte) *x509.CertificateRequest {
		c, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	badSig := csrFor(t, key, "node-1", nil, nil)
	badSig[len(badSig)-5] ^= 0xff
	withEmail := func() []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node-1"}, EmailAddresses: []string{"a@b.c"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}()
	cases := []struct {
		name string
		der  []byte
		want string // "" = accepted
		dns  []string
	}{
		{"just the CN", csrFor(t, key, "node-1", nil, nil), "", nil},
		{"recorded names, any case", csrFor(t, key, "node-1", []string{"N1.example.com."}, []string{"10.0.0.5"}), "", []string{"n1.example.com"}},
		{"another node's CN", csrFor(t, key, "node-2", nil, nil), `its CN is "node-2", but this node is "node-1"`, nil},
		{"a name not recorded", csrFor(t, key, "node-1", []string{"node2.example.com"}, nil), `DNS name "node2.example.com" is not one of node "node-1"'s names`, nil},
		{"an address not recorded", csrFor(t, key, "node-1", nil, []string{"10.0.0.6"}), "IP address 10.0.0.6 is not one", nil},
		{"bad signature", badSig, "signature does not verify", nil},
		{"RSA 1024", csrFor(t, testpki.NewKey(t, testpki.RSA1024), "node-1", nil, nil), "RSA key of 1024 bits", nil},
		{"e-mail address", withEmail, "e-mail addresses", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			names, err := pki.CheckCSR(parse(c.der), policy)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(names.DNSNames, ",") != strings.Join(c.dns, ",") {
					t.Fatalf("names %v, want %v", names.DNSNames, c.dns)
				}
				return
			}
			if err == nil || !errors.Is(err, pki.ErrBadCSR) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestCRL(t *testing.T) {
	now := time.Now()
	is := newIssuer(t, pki.ECDSAP256, now.Add(-time.Hour), now.Add(24*time.Hour))
	entries := []pki.Revoked{{Serial: big.NewInt(7), At: now, Reason: 1}, {Serial: big.NewInt(9), At: now}}
	der, err := is.CRL(entries, big.NewInt(3), now, now.Add(time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(is.Cert); err != nil {
		t.Fatal(err)
	}
	if crl.Number.Int64() != 3 || len(crl.RevokedCertificateEntries) != 2 || crl.RevokedCertificateEntries[0].ReasonCode != 1 || !bytes.Equal(crl.AuthorityKeyId, is.Cert.SubjectKeyId) {
		t.Fatalf("CRL %+v", crl)
	}
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
	testpki.WriteFile(t, dir, "ca.pem", pki.EncodeCertificates(is.Cert), 0o644)
	if out := testpki.OpenSSL(t, dir, "crl", "-in", "crl.pem", "-CAfile", "ca.pem", "-noout"); !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl: %s", out)
	}
	if _, err := is.CRL(nil, big.NewInt(1), now, now, rand.Reader); err == nil {
		t.Fatal("a CRL valid for no time")
	}
	if pki.ReasonName(1) != "keyCompromise" || pki.ReasonName(42) != "reason 42" {
		t.Fatal("ReasonName")
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"Node1.Example.COM.": "node1.example.com",
		"*.nodes.example":    "*.nodes.example",
		"localhost":          "localhost",
		"a-b.c":              "a-b.c",
	} {
		if got, err := pki.NormalizeDNSName(in); err != nil || got != want {
			t.Errorf("NormalizeDNSName(%q) = %q, %v", in, got, err)
		}
	}
	for in, want := range map[string]string{
		"":                      "empty",
		"10.0.0.5":              "use --ip",
		"a_b.example":           "not allowed",
		"-a.example":            "hyphen",
		"a..b":                  "empty label",
		"*.com":                 "wildcard",
		"a.*.b":                 "wildcard",
		strings.Repeat("a", 64): "longer than 63",
		"node 1":                "not allowed",
	} {
		if _, err := pki.NormalizeDNSName(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeDNSName(%q) = %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]string{"10.0.0.5": "10.0.0.5", "::ffff:10.0.0.5": "10.0.0.5", "FD00::5": "fd00::5"} {
		if ip, err := pki.ParseIPAddress(in); err != nil || ip.String() != want {
			t.Errorf("ParseIPAddress(%q) = %v, %v", in, ip, err)
		}
	}
	for in, want := range map[string]string{"10.0.0.300": "not an IP address", "fe80::1%eth0": "zone", "node1": "not an IP address"} {
		if _, err := pki.ParseIPAddress(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseIPAddress(%q) = %v, want %q", in, err, want)
		}
	}
}

// The certificates pass openssl's own checks: chain, purpose for both ends
// of mutual TLS, and the extensions openssl prints.
func TestIssuedCertificatesPassOpenSSL(t *testing.T) {
	now := time.Now()
	is := newIssuer(t, pki.ECDSAP256, now.Add(-time.Hour), now.Add(24*time.Hour))
	key, _ := pki.GenerateKey(pki.RSA2048, rand.Reader)
	leaf, err := is.Issue(pki.LeafProfile{CommonName: "node-1", PublicKey: key.Public(), DNSNames: []string{"n1"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "ca.pem", pki.EncodeCertificates(is.Cert), 0o644)
	testpki.WriteFile(t, dir, "leaf.pem", pki.EncodeCertificates(leaf), 0o644)
	for _, purpose := range []string{"sslserver", "sslclient"} {
		testpki.OpenSSL(t, dir, "verify", "-purpose", purpose, "-CAfile", "ca.pem", "leaf.pem")
	}
	text := testpki.OpenSSL(t, dir, "x509", "-in", "leaf.pem", "-noout", "-text")
	for _, want := range []string{"Digital Signature, Key Encipherment", "TLS Web Server Authentication, TLS Web Client Authentication", "CA:FALSE", "Subject Key Identifier", "Authority Key Identifier", "DNS:n1"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "leaf.pem")); err != nil {
		t.Fatal(err)
	}
}
