package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
