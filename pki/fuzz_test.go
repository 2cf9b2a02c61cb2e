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
		if len(c.Certificates)+len(c.Keys)+len(c.CRLs) == 0 {
			t.Fatal("Parse accepted a file with nothing in it")
		}
		for _, cert := range c.Certificates {
			_ = pki.Describe(cert).SANs()
			_ = pki.WeakSignature(cert)
			// The identity rules read every field a hostile leaf may fill.
			for _, id := range []string{"node-1", "1", "10.0.0.5", cert.Subject.CommonName} {
				m := pki.MatchNode(cert, id)
				if m == pki.NameInSAN && !pki.SANNamesNode(cert, id) {
					t.Fatalf("MatchNode(%q) = in SAN, but no SAN names it", id)
				}
				_, _ = pki.CNConstraintViolation(id, c.Certificates)
			}
			_ = pki.UsageProblems(cert, pki.UsageBoth)
			_ = pki.LooksIssuedByCertkeeper(cert)
		}
		for _, k := range c.Keys {
			_, _ = pki.KeyStrength(k.Signer.Public())
			_ = k.PEM()
		}
	})
}

// FuzzNormalizeDNSNameFor: a name accepted for a node id is either a
// valid DNS name or exactly the id's own all-digit name.
func FuzzNormalizeDNSNameFor(f *testing.F) {
	for _, s := range [][2]string{{"1", "1"}, {"1", "2"}, {"10.0.0", "10.0.0"}, {"node-1", "1"}, {"a b.7", "a b.7"}, {"1.", "1"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, id string) {
		got, err := pki.NormalizeDNSNameFor(name, id)
		if err != nil {
			return
		}
		if _, nerr := pki.NormalizeDNSName(name); nerr == nil {
			return
		}
		if d, ip := pki.IDName(id); ip != nil || got != d || !pki.IsNumericName(got) {
			t.Fatalf("NormalizeDNSNameFor(%q, %q) = %q: neither a DNS name nor the id", name, id, got)
		}
		if _, nerr := pki.NormalizeDNSName(got + ".x"); nerr != nil {
			t.Fatalf("NormalizeDNSNameFor(%q, %q) = %q has a bad label: %v", name, id, got, nerr)
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
