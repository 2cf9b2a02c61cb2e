package pki_test

import (
	"crypto/rand"
	"encoding/pem"
	"net"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// FuzzParse feeds arbitrary bytes to the parser every input file goes
// through: it must never panic, and what it accepts must describe cleanly.
func FuzzParse(f *testing.F) {
	ca := testpki.NewCA(f, "cluster", testpki.Options{})
	leaf := ca.Issue(f, "node-1", testpki.Options{DNS: []string{"n1"}})
	f.Add(leaf.CertPEM())
	f.Add(leaf.KeyPEM(f))
	f.Add(append(leaf.CertPEM(), ca.CertPEM()...))
	f.Add(leaf.Cert.Raw)
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := pki.Parse(data)
		if err != nil {
			return
		}
		if len(c.Certificates)+len(c.Keys) == 0 {
			t.Fatal("Parse accepted a file with nothing in it")
		}
		for _, cert := range c.Certificates {
			_ = pki.Describe(cert).SANs()
			_ = pki.WeakSignature(cert)
		}
		for _, k := range c.Keys {
			_, _ = pki.KeyStrength(k.Signer.Public())
			_ = k.PEM()
		}
	})
}

// FuzzParseCSR feeds arbitrary bytes to what `ca sign` reads from a node
// over SSH: parsing and checking must never panic, and a request the check
// accepts must ask only for names the policy allows.
func FuzzParseCSR(f *testing.F) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	ok := csrFor(f, key, "node-1", []string{"n1.example.com"}, []string{"10.0.0.5"})
	f.Add(ok)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: ok}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: csrFor(f, key, "node-2", []string{"x"}, nil)}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	policy := pki.NamePolicy{CommonName: "node-1", DNSNames: []string{"n1.example.com"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := pki.ParseCSR(data)
		if err != nil {
			return
		}
		names, err := pki.CheckCSR(csr, policy)
		if err != nil {
			return
		}
		if csr.Subject.CommonName != "node-1" {
			t.Fatalf("accepted CN %q", csr.Subject.CommonName)
		}
		for _, d := range names.DNSNames {
			if d != "n1.example.com" {
				t.Fatalf("accepted DNS name %q", d)
			}
		}
		for _, ip := range names.IPs {
			if !ip.Equal(policy.IPs[0]) {
				t.Fatalf("accepted IP %s", ip)
			}
		}
	})
}
