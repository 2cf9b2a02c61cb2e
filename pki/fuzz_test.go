package pki_test

import (
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
