package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// published reads what nodes/<id>/ holds: the CAs of its cluster.crt and
// the issuer check of its leaf.
func publishedTrust(t *testing.T, a *Authority, id string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.Dir, NodesDir, id, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return c.Certificates
}

func trustCount(t *testing.T, a *Authority, id string) int {
	return len(publishedTrust(t, a, id))
}

func reload(t *testing.T, a *Authority) *Authority {
	t.Helper()
	b, err := Load(a.Dir, a.opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func phase(t *testing.T, a *Authority) Phase {
	t.Helper()
	st, err := reload(t, a).RotationState(nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Phase
}

// A rotation from start to finish: both CAs are published first, leaves
// stay old; issue moves every key-mode node to the new CA and a CSR node
// at its next sign; finish refuses while the CSR node is old, then drops
// the old CA everywhere.
func TestRotateFlow(t *testing.T) {
	a := newCA(t, Options{}, nil)
	issue(t, a, nodes(t, "node-1", "node-2"), IssueOptions{})
	key := testpki.NewKey(t, "")
	if _, err := a.Sign("node-3", csr(t, key, "node-3"), SignOptions{}); err != nil {
		t.Fatal(err)
	}
	oldFP := a.fingerprint

	if _, err := a.RotateIssue(context.Background()); err == nil || !strings.Contains(err.Error(), "no CA rotation") {
		t.Fatalf("issue before start: %v", err)
	}
	r, err := a.RotateStart(RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.From != oldFP || r.To == oldFP || r.Phase != PhaseStarted {
		t.Fatalf("rotation %+v", r)
	}
	a = reload(t, a)
	if a.fingerprint != oldFP || trustCount(t, a, "node-1") != 2 {
		t.Fatalf("after start: signing %s, node-1 trusts %d CAs", a.fingerprint, trustCount(t, a, "node-1"))
	}
	// Start again is harmless and keeps the same new CA.
	if r2, err := a.RotateStart(RotateOptions{}); err != nil || r2.To != r.To {
		t.Fatalf("start again: %+v %v", r2, err)
	}
	st, err := a.RotationState(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Leaf != "old" {
			t.Errorf("%s: leaf %q after start", n.ID, n.Leaf)
		}
		if n.ID != "node-3" && n.Published != "old+new" {
			t.Errorf("%s: published %q after start", n.ID, n.Published)
		}
	}

	res, err := a.RotateIssue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Issued, ",") != "node-1,node-2" || strings.Join(res.Waiting, ",") != "node-3" {
		t.Fatalf("issue: %+v", res)
	}
	a = reload(t, a)
	if a.fingerprint != r.To || trustCount(t, a, "node-1") != 2 {
		t.Fatalf("after issue: signing %s, trust %d", a.fingerprint, trustCount(t, a, "node-1"))
	}
	var still *StillOld
	if _, err := a.RotateFinish(RotateOptions{}); !errors.As(err, &still) || strings.Join(still.IDs, ",") != "node-3" {
		t.Fatalf("finish with node-3 on the old CA: %v", err)
	}
	if _, err := a.Sign("node-3", csr(t, key, "node-3"), SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RotateFinish(RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	a = reload(t, a)
	if trustCount(t, a, "node-1") != 1 || pki.Fingerprint(publishedTrust(t, a, "node-1")[0]) != r.To {
		t.Fatal("after finish node-1 does not trust the new CA alone")
	}
	if _, err := os.Stat(filepath.Join(a.Dir, RotationDir)); !os.IsNotExist(err) {
		t.Fatalf("rotation/ left after finish: %v", err)
	}
	if phase(t, a) != PhaseNone {
		t.Fatal("rotation record left")
	}
	// The CA works as before: issue, list.
	issue(t, a, nodes(t, "node-4"), IssueOptions{})
	if _, err := a.List(false); err != nil {
		t.Fatal(err)
	}
}

// Abort before issue drops the new CA; abort after issue brings every
// node back to the old CA.
func TestRotateAbort(t *testing.T) {
	for _, after := range []string{"start", "issue"} {
		t.Run(after, func(t *testing.T) {
			a := newCA(t, Options{}, nil)
			issue(t, a, nodes(t, "node-1", "node-2"), IssueOptions{})
			oldFP := a.fingerprint
			if _, err := a.RotateStart(RotateOptions{}); err != nil {
				t.Fatal(err)
			}
			if after == "issue" {
				if _, err := reload(t, a).RotateIssue(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			a = reload(t, a)
			r, _, err := a.RotateAbort(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Phase != PhaseNone {
				t.Fatalf("abort left phase %q", r.Phase)
			}
			a = reload(t, a)
			if a.fingerprint != oldFP || trustCount(t, a, "node-1") != 1 || pki.Fingerprint(publishedTrust(t, a, "node-1")[0]) != oldFP {
				t.Fatal("not back on the old CA")
			}
			st, err := a.RotationState(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range st.Nodes {
				if n.Leaf != "new" || n.PublishedLeaf != "new" { // "new" is the CA that signs now: the old one
					t.Errorf("%s: %+v", n.ID, n)
				}
			}
		})
	}
}

// During a rotation cluster.crl holds one CRL per trusted CA, each listing
// what that CA issued: openssl verify -crl_check (nginx's ssl_crl check)
// against both CAs and the published file accepts a leaf of either CA and
// refuses a revoked one of either. After finish, the new CA's CRL alone.
func TestRotationCRLPerCA(t *testing.T) {
	a := newCA(t, Options{}, nil)
	issue(t, a, nodes(t, "node-1", "node-2"), IssueOptions{})
	if _, err := a.Revoke("node-2", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteCRL(0); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leaf := func(id, name string) string {
		data, err := os.ReadFile(filepath.Join(a.Dir, NodesDir, id, "node.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return testpki.WriteFile(t, tmp, name, data, 0o644)
	}
	oldLeaf1, oldLeaf2 := leaf("node-1", "old1.pem"), leaf("node-2", "old2.pem")
	crls := func() []*x509.RevocationList {
		t.Helper()
		for _, p := range []string{filepath.Join(a.Dir, CRLFile), filepath.Join(a.Dir, NodesDir, "node-1", CRLFile)} {
			if _, err := os.Stat(p); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(filepath.Join(a.Dir, NodesDir, "node-1", CRLFile))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCRLs(data)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	listed := func(crl *x509.RevocationList) int { return len(crl.RevokedCertificateEntries) }

	r, err := a.RotateStart(RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a = reload(t, a)
	oldCA, newCA, err := a.rotationCAs(r)
	if err != nil {
		t.Fatal(err)
	}
	got := crls()
	if len(got) != 2 || got[0].CheckSignatureFrom(oldCA) != nil || got[1].CheckSignatureFrom(newCA) != nil || listed(got[0]) != 1 || listed(got[1]) != 0 {
		t.Fatalf("after start: %d CRLs, want the old CA's listing node-2 and the new CA's empty", len(got))
	}
	if _, err := a.RotateIssue(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = reload(t, a)
	issue(t, a, nodes(t, "node-3"), IssueOptions{})
	newLeaf1, newLeaf3 := leaf("node-1", "new1.pem"), leaf("node-3", "new3.pem")
	if _, err := a.Revoke("node-3", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteCRL(0); err != nil {
		t.Fatal(err)
	}
	got = crls()
	if len(got) != 2 || got[0].CheckSignatureFrom(oldCA) != nil || got[1].CheckSignatureFrom(newCA) != nil || listed(got[0]) != 1 || listed(got[1]) != 1 {
		t.Fatalf("after issue and a revocation: %d CRLs, want one per CA, each listing its own revoked leaf", len(got))
	}
	testenv.NeedUnix(t, "openssl")
	trust := testpki.WriteFile(t, tmp, "trust.pem", pki.EncodeCertificates(oldCA, newCA), 0o644)
	crlFile := filepath.Join(a.Dir, NodesDir, "node-1", CRLFile)
	for _, c := range []struct {
		name, leaf string
		ok         bool
	}{
		{"old CA's leaf", oldLeaf1, true},
		{"new CA's leaf", newLeaf1, true},
		{"old CA's revoked leaf", oldLeaf2, false},
		{"new CA's revoked leaf", newLeaf3, false},
	} {
		out, err := testpki.OpenSSLErr(tmp, "verify", "-crl_check", "-CAfile", trust, "-CRLfile", crlFile, c.leaf)
		if (err == nil) != c.ok || (!c.ok && !strings.Contains(out, "revoked")) {
			t.Errorf("%s: openssl verify -crl_check accepts %v, want %v\n%s", c.name, err == nil, c.ok, out)
		}
	}
	if _, err := a.RotateFinish(RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = crls()
	if len(got) != 1 || got[0].CheckSignatureFrom(newCA) != nil || listed(got[0]) != 1 {
		t.Fatalf("after finish: %d CRLs, want the new CA's alone", len(got))
	}
}

// IssuedBy keeps the certificates a CA signed.
func TestIssuedBy(t *testing.T) {
	ca := testpki.NewCA(t, "a", testpki.Options{})
	other := testpki.NewCA(t, "b", testpki.Options{})
	mine := CertRecord{Serial: "1", DER: ca.Issue(t, "n1", testpki.Options{DNS: []string{"n1"}}).Cert.Raw}
	theirs := CertRecord{Serial: "2", DER: other.Issue(t, "n2", testpki.Options{DNS: []string{"n2"}}).Cert.Raw}
	broken := CertRecord{Serial: "3", DER: []byte("x")}
	for _, c := range []struct {
		ca   *x509.Certificate
		want string
	}{{ca.Cert, "1,3"}, {other.Cert, "2,3"}} {
		var s []string
		for _, r := range IssuedBy([]CertRecord{mine, theirs, broken}, c.ca) {
			s = append(s, r.Serial)
		}
		if strings.Join(s, ",") != c.want {
			t.Errorf("IssuedBy(%s) = %v, want %s", c.ca.Subject, s, c.want)
		}
	}
}
