package agent

import (
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The last step of a CA rotation brings a cluster.crt that holds the new
// CA alone, where the live one holds both: a subset of what is live, but
// not what is live. When such a set fails validation (a CRL from the old
// CA, say) it is rejected and reported, not taken for "already installed"
// and deleted without a word while check says OK.
func TestAlreadyLiveNeedsTheSameCAs(t *testing.T) {
	oldCA := testpki.NewCA(t, "old", testpki.Options{})
	newCA := testpki.NewCA(t, "new", testpki.Options{})
	leaf := newCA.Issue(t, "n1", testpki.Options{})
	key := leaf.KeyPEM(t)
	live := map[string][]byte{
		"cluster.crt": testpki.CertPEM(oldCA.Cert, newCA.Cert),
		"node.crt":    leaf.CertPEM(),
		"node.key":    key,
	}
	same := []rotate.Input{{Name: "cluster.crt", Data: testpki.CertPEM(oldCA.Cert, newCA.Cert)}, {Name: "node.crt", Data: leaf.CertPEM()}, {Name: "node.key", Data: key}}
	if !alreadyLive(same, live) {
		t.Errorf("the live files pushed again are not already live")
	}
	finish := []rotate.Input{{Name: "cluster.crt", Data: newCA.CertPEM()}, {Name: "node.crt", Data: leaf.CertPEM()}, {Name: "node.key", Data: key}}
	if alreadyLive(finish, live) {
		t.Errorf("a cluster.crt that drops the old CA is taken for already live")
	}
	leafOnly := []rotate.Input{{Name: "node.crt", Data: leaf.CertPEM()}}
	if !alreadyLive(leafOnly, live) {
		t.Errorf("the live leaf alone is not already live")
	}
}
