package authority

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/certkeeper/certkeeper/pki"
)

// After `ca sign`, the node's publish directory holds what the node runs
// with: the signed certificate, the current cluster.crt and cluster.crl,
// and no key (the one `ca issue` made no longer matches; the node's own
// never leaves it). A push of the directory then brings the node nothing
// older than its live certificate. A node the CA first met by its request
// gets a directory of its own.
func TestSignPublishesTheCertificateWithoutAKey(t *testing.T) {
	a := newCA(t, Options{}, nil)
	r, _ := NodeRequest("node-1", Names{}, "")
	issue(t, a, []Request{r}, IssueOptions{})
	if _, err := a.WriteCRL(0); err != nil {
		t.Fatal(err)
	}
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	for _, id := range []string{"node-1", "node-new"} {
		s, err := a.Sign(id, csr(t, key, id), SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(a.Dir, NodesDir, id)
		crt, err := os.ReadFile(filepath.Join(dir, "node.crt"))
		if err != nil || !bytes.Equal(crt, pki.EncodeCertificates(s.Chain...)) {
			t.Fatalf("%s: published node.crt is not the signed chain: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "node.key")); !os.IsNotExist(err) {
			t.Errorf("%s: a key is still published after ca sign: %v", id, err)
		}
		if ca, _ := os.ReadFile(filepath.Join(dir, CertFile)); !bytes.Equal(ca, a.CACertPEM()) {
			t.Errorf("%s: cluster.crt is not the CA's", id)
		}
		if crl, _ := os.ReadFile(filepath.Join(dir, CRLFile)); !bytes.Equal(crl, a.currentCRL()) {
			t.Errorf("%s: cluster.crl is not the current CRL", id)
		}
	}
}
