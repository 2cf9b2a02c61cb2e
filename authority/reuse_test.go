package authority

import (
	"crypto/rand"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// The rule for a request whose key already has a certificate: the cases
// a careful CA admin tells apart.
func TestReuseSigned(t *testing.T) {
	clk := &clock{t: time.Now().UTC()}
	a := newCA(t, Options{Now: clk.now}, nil)
	other := newCA(t, Options{}, nil)
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	key2, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	s, err := a.Sign("node-1", csr(t, key, "node-1", "n1.example.com"), SignOptions{Extra: Names{DNS: []string{"n1.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	cert := s.Chain[0]
	rec := newCertRecord("node-1", KindNode, cert, SourceCSR, clk.now())
	names := Names{DNS: cert.DNSNames}
	nb, na, _, err := a.leafValidity(clk.now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	with := func(f func(*CertRecord)) *CertRecord { r := rec; f(&r); return &r }
	for _, c := range []struct {
		name   string
		cur    *CertRecord
		pub    any
		names  Names
		issuer *x509.Certificate
		nb, na time.Time
		now    time.Time
		want   bool
	}{
		{"the same key, names and lifetime, just signed: handed back", &rec, key.Public(), names, a.Cert, nb, na, clk.now(), true},
		{"an hour later (the next attempt): handed back", &rec, key.Public(), names, a.Cert, nb.Add(time.Hour), na.Add(time.Hour), clk.now().Add(time.Hour), true},
		{"names in another order and case: handed back", &rec, key.Public(), Names{DNS: []string{"N1.example.com", "node-1"}}, a.Cert, nb, na, clk.now(), true},
		{"half its life gone: signed anew", &rec, key.Public(), names, a.Cert, nb, na, cert.NotBefore.Add(life / 2), false},
		{"expired: signed anew", &rec, key.Public(), names, a.Cert, nb, na, cert.NotAfter.Add(time.Hour), false},
		{"another key: signed", &rec, key2.Public(), names, a.Cert, nb, na, clk.now(), false},
		{"a name more: signed", &rec, key.Public(), Names{DNS: append([]string{"n2.example.com"}, cert.DNSNames...)}, a.Cert, nb, na, clk.now(), false},
		{"an address more: signed", &rec, key.Public(), Names{DNS: cert.DNSNames, IPs: []net.IP{net.ParseIP("10.0.0.5")}}, a.Cert, nb, na, clk.now(), false},
		{"another lifetime (--days): signed", &rec, key.Public(), names, a.Cert, nb, nb.Add(5 * 24 * time.Hour), clk.now(), false},
		{"another issuer (a CA rotation): signed", &rec, key.Public(), names, other.Cert, nb, na, clk.now(), false},
		{"revoked: signed", with(func(r *CertRecord) { r.Revoked = &Revocation{At: clk.now()} }), key.Public(), names, a.Cert, nb, na, clk.now(), false},
		{"made here (ca issue), not from a request: signed", with(func(r *CertRecord) { r.Source = SourceIssue }), key.Public(), names, a.Cert, nb, na, clk.now(), false},
		{"no current certificate: signed", nil, key.Public(), names, a.Cert, nb, na, clk.now(), false},
	} {
		if got := ReuseSigned(c.cur, cert, c.pub, c.names, c.issuer, c.nb, c.na, c.now); got != c.want {
			t.Errorf("%s: ReuseSigned = %v, want %v", c.name, got, c.want)
		}
	}
}

// A node whose install keeps failing sends the same pending key every
// hour: the CA hands back the certificate it recorded for it, and the
// database holds one certificate for that key, not one per attempt. A new
// key (the next renewal) is signed as before.
func TestSignTheSameKeyAgainRecordsNothingNew(t *testing.T) {
	clk := &clock{t: time.Now().UTC()}
	a := newCA(t, Options{Now: clk.now}, nil)
	r, _ := NodeRequest("node-1", Names{}, "")
	issue(t, a, []Request{r}, IssueOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	first, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{})
	if err != nil || first.Reused {
		t.Fatalf("first request: %v (reused %v)", err, first != nil && first.Reused)
	}
	for i := 0; i < 5; i++ {
		clk.add(time.Hour)
		s, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Reused || s.Chain[0].SerialNumber.Cmp(first.Chain[0].SerialNumber) != 0 {
			t.Fatalf("attempt %d: serial %x (reused %v), want the first one, %x", i+2, s.Chain[0].SerialNumber, s.Reused, first.Chain[0].SerialNumber)
		}
	}
	count := func() int {
		_, certs, err := a.Records()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range certs {
			if c.ID == "node-1" && c.Source == SourceCSR {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d certificates recorded from requests after six attempts with one key, want 1", n)
	}
	key2, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	s, err := a.Sign("node-1", csr(t, key2, "node-1"), SignOptions{})
	if err != nil || s.Reused || !pki.KeyMatches(s.Chain[0], key2) {
		t.Fatalf("a new key: %v (reused %v)", err, s != nil && s.Reused)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d certificates recorded, want 2", n)
	}
	if cur := nodeRecord(t, a, "node-1").Current; cur != FormatSerial(s.Chain[0].SerialNumber) {
		t.Errorf("current serial %s, want the new key's", cur)
	}
}
