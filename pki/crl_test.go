package pki_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

func makeCRL(t testing.TB, ca *testpki.Pair, this, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: this, NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this, ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// certkeeperAccepts is the node's judgement of a peer's certificate with a
// CRL file: the CRL must parse, be signed by the CA and current, and must
// not list the certificate.
func certkeeperAccepts(crlPEM []byte, ca, leaf *x509.Certificate, now time.Time) bool {
	crl, err := pki.ParseCRL(crlPEM)
	if err != nil {
		return false
	}
	if _, err := pki.CheckCRL(crl, []*x509.Certificate{ca}, now); err != nil {
		return false
	}
	return pki.Revocation(crl, leaf) == nil
}

// TestCRLAgreesWithOpenSSL: on every CRL case, certkeeper's verdict is
// openssl verify -crl_check's (the check nginx's ssl_crl makes).
func TestCRLAgreesWithOpenSSL(t *testing.T) {
	testenv.NeedUnix(t, "openssl")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	other := testpki.NewCA(t, "other cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"node-1"}})
	peer := ca.Issue(t, "node-2", testpki.Options{DNS: []string{"node-2"}})
	now := time.Now()
	valid := makeCRL(t, ca, now.Add(-time.Hour), now.Add(24*time.Hour), peer.Cert)
	cases := []struct {
		name string
		crl  []byte
		want bool
	}{
		{"valid, not revoked", valid, true},
		{"empty CRL", makeCRL(t, ca, now.Add(-time.Hour), now.Add(24*time.Hour)), true},
		{"leaf revoked", makeCRL(t, ca, now.Add(-time.Hour), now.Add(24*time.Hour), leaf.Cert), false},
		{"expired", makeCRL(t, ca, now.Add(-3*time.Hour), now.Add(-time.Hour)), false},
		{"not valid yet", makeCRL(t, ca, now.Add(time.Hour), now.Add(24*time.Hour)), false},
		{"other CA", makeCRL(t, other, now.Add(-time.Hour), now.Add(24*time.Hour)), false},
		{"malformed (truncated)", append(append([]byte{}, valid[:len(valid)/2]...), "\n-----END X509 CRL-----\n"...), false},
		{"malformed (bit flipped)", flipSignature(t, valid), false},
	}
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "ca.pem", ca.CertPEM(), 0o644)
	testpki.WriteFile(t, dir, "leaf.pem", leaf.CertPEM(), 0o644)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := certkeeperAccepts(c.crl, ca.Cert, leaf.Cert, now)
			crlFile := testpki.WriteFile(t, dir, "crl.pem", c.crl, 0o644)
			out, err := testpki.OpenSSLErr(dir, "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", filepath.Base(crlFile), "leaf.pem")
			ossl := err == nil
			if got != c.want || ossl != c.want {
				t.Fatalf("certkeeper accepts: %v, openssl verify -crl_check accepts: %v, want %v\n%s", got, ossl, c.want, out)
			}
		})
	}
}

// flipSignature damages the CRL's last signature byte: it still parses,
// but no CA signed it.
func flipSignature(t testing.TB, crlPEM []byte) []byte {
	b, _ := pem.Decode(crlPEM)
	der := append([]byte{}, b.Bytes...)
	der[len(der)-1] ^= 0x01
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// FuzzParseCRL feeds arbitrary bytes to the CRL parser a node reads a
// pushed or pulled CRL with: it must never panic, and a CRL it accepts
// has a nextUpdate after its thisUpdate and can be judged and encoded.
func FuzzParseCRL(f *testing.F) {
	ca := testpki.NewCA(f, "cluster", testpki.Options{})
	leaf := ca.Issue(f, "node-1", testpki.Options{DNS: []string{"n1"}})
	now := time.Now()
	crl := makeCRL(f, ca, now.Add(-time.Hour), now.Add(time.Hour), leaf.Cert)
	f.Add(crl)
	b, _ := pem.Decode(crl)
	f.Add(b.Bytes)
	f.Add(append(append([]byte{}, crl...), crl...))
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := pki.ParseCRL(data)
		if err != nil {
			return
		}
		if !c.NextUpdate.After(c.ThisUpdate) {
			t.Fatal("ParseCRL accepted a CRL whose nextUpdate is not after its thisUpdate")
		}
		if len(c.RevokedCertificateEntries) > pki.MaxCRLEntries {
			t.Fatal("ParseCRL accepted more entries than MaxCRLEntries")
		}
		_, _ = pki.CheckCRL(c, []*x509.Certificate{ca.Cert}, now)
		_ = pki.Revocation(c, leaf.Cert)
		_ = pki.CRLNumber(c)
		if _, err := pki.ParseCRL(pki.EncodeCRL(c)); err != nil {
			t.Fatalf("a CRL ParseCRL accepted does not parse again once encoded: %v", err)
		}
	})
}

// FuzzParseCRLs is FuzzParseCRL for a file of several CRLs (one per CA
// during a rotation): never a panic, never more than MaxCRLsInFile, each
// CRL as ParseCRL would accept it, and the encoding reads back the same.
func FuzzParseCRLs(f *testing.F) {
	ca := testpki.NewCA(f, "cluster", testpki.Options{})
	ca2 := testpki.NewCA(f, "cluster 2", testpki.Options{})
	leaf := ca.Issue(f, "node-1", testpki.Options{DNS: []string{"n1"}})
	now := time.Now()
	crl := makeCRL(f, ca, now.Add(-time.Hour), now.Add(time.Hour), leaf.Cert)
	crl2 := makeCRL(f, ca2, now.Add(-time.Hour), now.Add(2*time.Hour))
	f.Add(crl)
	f.Add(append(append([]byte{}, crl...), crl2...))
	b, _ := pem.Decode(crl)
	f.Add(b.Bytes)
	f.Add(bytes.Repeat(crl, 5))
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := pki.ParseCRLs(data)
		if err != nil {
			return
		}
		if len(crls) == 0 || len(crls) > pki.MaxCRLsInFile {
			t.Fatalf("ParseCRLs accepted %d CRLs", len(crls))
		}
		for _, c := range crls {
			if !c.NextUpdate.After(c.ThisUpdate) || len(c.RevokedCertificateEntries) > pki.MaxCRLEntries {
				t.Fatal("ParseCRLs accepted a CRL ParseCRL would refuse")
			}
			_, _ = pki.CheckCRL(c, []*x509.Certificate{ca.Cert, ca2.Cert}, now)
		}
		_ = pki.RevocationIn(crls, leaf.Cert)
		_ = pki.EarliestCRL(crls)
		again, err := pki.ParseCRLs(pki.EncodeCRLs(crls))
		if err != nil || len(again) != len(crls) {
			t.Fatalf("CRLs ParseCRLs accepted do not parse again once encoded: %d, %v", len(again), err)
		}
	})
}

func TestParseCRLs(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	ca2 := testpki.NewCA(t, "cluster 2", testpki.Options{})
	now := time.Now()
	one := makeCRL(t, ca, now.Add(-time.Hour), now.Add(time.Hour))
	two := makeCRL(t, ca2, now.Add(-time.Hour), now.Add(2*time.Hour))
	der, _ := pem.Decode(one)
	bad := []byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n")
	cert := pki.EncodeCertificates(ca.Cert)
	for _, tc := range []struct {
		name string
		data []byte
		n    int // CRLs read; 0: refused
	}{
		{"one PEM", one, 1},
		{"one DER", der.Bytes, 1},
		{"one per CA", append(append([]byte{}, one...), two...), 2},
		{"the bound", bytes.Repeat(one, pki.MaxCRLsInFile), pki.MaxCRLsInFile},
		{"over the bound", bytes.Repeat(one, pki.MaxCRLsInFile+1), 0},
		{"a broken second", append(append([]byte{}, one...), bad...), 0},
		{"a certificate among them", append(append([]byte{}, one...), cert...), 0},
		{"empty", []byte("\n"), 0},
		{"no PEM block", []byte("-----BEGIN nothing"), 0},
		{"too large", bytes.Repeat([]byte{' '}, pki.MaxFileSize+1), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crls, err := pki.ParseCRLs(tc.data)
			if tc.n == 0 {
				if err == nil {
					t.Fatalf("accepted %d CRLs", len(crls))
				}
				return
			}
			if err != nil || len(crls) != tc.n {
				t.Fatalf("got %d CRLs, %v; want %d", len(crls), err, tc.n)
			}
		})
	}
	crls, _ := pki.ParseCRLs(append(append([]byte{}, two...), one...))
	if e := pki.EarliestCRL(crls); e != crls[1] {
		t.Errorf("EarliestCRL is not the one with the earlier nextUpdate")
	}
}
