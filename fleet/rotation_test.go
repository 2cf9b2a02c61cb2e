package fleet

import (
	"errors"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// ca rotate status --inventory: each node's INSTALLED column says which
// CA signed the leaf its report shows, joined by serial with the CA's
// records; a node whose report is missing, damaged or empty says so, and
// one outside the inventory stays unknown.
func TestRotationInstalled(t *testing.T) {
	oldCA := testpki.NewCA(t, "cluster", testpki.Options{})
	newCA := testpki.NewCA(t, "cluster 2", testpki.Options{})
	strange := testpki.NewCA(t, "cluster", testpki.Options{})
	ca := CA{Nodes: map[string]authority.NodeRecord{}}
	record := func(id string, by *testpki.Pair) string {
		c := by.Issue(t, id, testpki.Options{})
		serial := pki.Serial(c.Cert)
		ca.Certs = append(ca.Certs, authority.CertRecord{ID: id, Serial: serial, DER: c.Cert.Raw, IssuedAt: t0.Add(-time.Hour), NotAfter: c.Cert.NotAfter})
		ca.Nodes[id] = authority.NodeRecord{ID: id, Current: serial}
		return serial
	}
	report := func(id, serial string) []byte {
		return Report{NodeID: id, Written: t0, Bundles: []BundleReport{{Name: "b", Serial: serial, Health: "OK"}}}.Marshal()
	}
	oldSerial := record("on-old", oldCA)
	newSerial := record("on-new", newCA)
	pendingOld := record("pending", oldCA)
	record("pending", newCA) // issued, not yet installed
	strangeSerial := record("strange", strange)
	record("down", newCA)
	record("damaged", newCA)
	record("empty", newCA)
	record("unlisted", newCA)
	fetched := []Fetched{
		{ID: "on-old", Data: report("on-old", oldSerial)},
		{ID: "on-new", Data: report("on-new", newSerial)},
		{ID: "pending", Data: report("pending", pendingOld)},
		{ID: "strange", Data: report("strange", strangeSerial)},
		{ID: "unknown-serial", Data: report("unknown-serial", "0A:0B")},
		{ID: "down", Err: errors.New("dial tcp 127.0.0.1:1: connection refused")},
		{ID: "damaged", Data: []byte("{")},
		{ID: "empty", Data: Report{NodeID: "empty", Written: t0}.Marshal()},
	}
	installed := RotationInstalled(Join(fetched, ca, JoinOptions{Now: t0}), ca)
	for _, c := range []struct{ id, want string }{
		{"on-old", InstalledOld},
		{"on-new", InstalledNew},
		{"pending", InstalledOld},
		{"strange", InstalledOther},
		{"unknown-serial", InstalledOther},
		{"down", InstalledUnreachable},
		{"damaged", InstalledBadReport},
		{"empty", InstalledNotInstalled},
		{"unlisted", ""},
	} {
		if got := installed(c.id, oldCA.Cert, newCA.Cert); got != c.want {
			t.Errorf("%s: installed %q, want %q", c.id, got, c.want)
		}
	}
	// After finish (no old CA any more), a node still on the old leaf is
	// "other": neither the CA that signs now nor one it knows of.
	if got := installed("on-old", nil, newCA.Cert); got != InstalledOther {
		t.Errorf("on-old without an old CA: %q", got)
	}
}
