package rotate_test

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

func crlFor(t *testing.T, ca *testpki.Pair, this, next time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// TestCRLHealth: check's judgement of an installed CRL.
func TestCRLHealth(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	other := testpki.NewCA(t, "other", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"node-1"}})
	now := time.Now()
	newCA := testpki.NewCA(t, "cluster 2", testpki.Options{})
	one := func(c *x509.RevocationList) []*x509.RevocationList { return []*x509.RevocationList{c} }
	current := crlFor(t, ca, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	cases := []struct {
		name string
		crls []*x509.RevocationList
		want []string // substrings of the findings, in order
		h    []rotate.Health
	}{
		{"current", one(current), nil, nil},
		{"a quarter left", one(crlFor(t, ca, now.Add(-29*24*time.Hour), now.Add(24*time.Hour))), []string{"CRL expires on"}, []rotate.Health{rotate.Warning}},
		{"expired", one(crlFor(t, ca, now.Add(-3*time.Hour), now.Add(-time.Hour))), []string{"CRL expired on"}, []rotate.Health{rotate.Critical}},
		{"other CA", one(crlFor(t, other, now.Add(-time.Hour), now.Add(time.Hour))), []string{"not signed by the cluster CA"}, []rotate.Health{rotate.Critical}},
		{"this node revoked", one(crlFor(t, ca, now.Add(-time.Hour), now.Add(30*24*time.Hour), leaf.Cert)), []string{"this node's certificate was revoked on"}, []rotate.Health{rotate.Critical}},
		// During a CA rotation: one CRL per CA.
		{"one per CA", []*x509.RevocationList{current, crlFor(t, newCA, now.Add(-time.Hour), now.Add(30*24*time.Hour))}, nil, nil},
		{"one per CA, the new one's near its end", []*x509.RevocationList{current, crlFor(t, newCA, now.Add(-29*24*time.Hour), now.Add(24*time.Hour))}, []string{"CRL expires on"}, []rotate.Health{rotate.Warning}},
		{"one per CA, one expired", []*x509.RevocationList{current, crlFor(t, newCA, now.Add(-3*time.Hour), now.Add(-time.Hour))}, []string{"CRL expired on"}, []rotate.Health{rotate.Critical}},
		{"one per CA, a third from no cluster CA", []*x509.RevocationList{current, crlFor(t, other, now.Add(-time.Hour), now.Add(time.Hour))}, []string{"not signed by the cluster CA"}, []rotate.Health{rotate.Critical}},
		{"revoked in the CRL of its issuer", []*x509.RevocationList{crlFor(t, newCA, now.Add(-time.Hour), now.Add(30*24*time.Hour)), crlFor(t, ca, now.Add(-time.Hour), now.Add(30*24*time.Hour), leaf.Cert)}, []string{"this node's certificate was revoked on"}, []rotate.Health{rotate.Critical}},
		{"its serial in the other CA's CRL revokes nothing", []*x509.RevocationList{current, crlFor(t, newCA, now.Add(-time.Hour), now.Add(30*24*time.Hour), leaf.Cert)}, nil, nil},
	}
	cas := []*x509.Certificate{ca.Cert, newCA.Cert}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := rotate.CRLHealth(now, c.crls, cas, leaf.Cert, "signing.crl")
			if len(got) != len(c.want) {
				t.Fatalf("findings %+v, want %q", got, c.want)
			}
			for i, f := range got {
				if f.Health != c.h[i] || !strings.Contains(f.Text, c.want[i]) {
					t.Fatalf("finding %d: %v %q, want %v %q", i, f.Health, f.Text, c.h[i], c.want[i])
				}
			}
		})
	}
}

// TestCAExpiryHealth: the CA's own expiry names ca rotate as the fix.
func TestCAExpiryHealth(t *testing.T) {
	now := time.Now()
	mk := func(before, after time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: now.Add(before), NotAfter: now.Add(after)}
	}
	cases := []struct {
		name  string
		ca    *x509.Certificate
		share float64
		want  rotate.Health
	}{
		{"plenty of life", mk(-10*time.Hour, 90*time.Hour), 0, rotate.OK},
		{"under 20%", mk(-90*time.Hour, 10*time.Hour), 0, rotate.Warning},
		{"under 20%, off", mk(-90*time.Hour, 10*time.Hour), -1, rotate.OK},
		{"under 50%", mk(-60*time.Hour, 40*time.Hour), 0.5, rotate.Warning},
		{"expired", mk(-100*time.Hour, -time.Hour), 0, rotate.Critical},
	}
	for _, c := range cases {
		h, text := rotate.CAExpiryHealth(now, []*x509.Certificate{c.ca}, c.share)
		if h != c.want || (h != rotate.OK && !strings.Contains(text, "ca rotate")) {
			t.Errorf("%s: %v %q, want %v naming ca rotate", c.name, h, text, c.want)
		}
	}
	for _, s := range []string{"20%", "0.2", "0%"} {
		if _, err := rotate.ParseShare(s); err != nil {
			t.Errorf("ParseShare(%q): %v", s, err)
		}
	}
	for _, s := range []string{"100%", "-1%", "abc"} {
		if _, err := rotate.ParseShare(s); err == nil {
			t.Errorf("ParseShare(%q) accepted", s)
		}
	}
}
