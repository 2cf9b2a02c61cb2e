package rotate_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// FuzzClassify splits fuzz data into up to three files and runs them
// through classification and validation: no input may panic, and what
// validates must plan into files that classify back to the same bundle.
func FuzzClassify(f *testing.F) {
	ca := testpki.NewCA(f, "cluster", testpki.Options{})
	leaf := ca.Issue(f, "node-1", testpki.Options{NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)})
	sep := []byte("\x00--file--\x00")
	f.Add(bytes.Join([][]byte{leaf.CertPEM(), leaf.KeyPEM(f), ca.CertPEM()}, sep))
	f.Add(bytes.Join([][]byte{append(leaf.CertPEM(), ca.CertPEM()...), leaf.KeyPEM(f)}, sep))
	f.Add(bytes.Join([][]byte{leaf.Cert.Raw, ca.Cert.Raw}, sep))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	layout, err := rotate.Rules("flocker-node", "node-1")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.SplitN(data, sep, 3)
		var inputs []rotate.Input
		for i, p := range parts {
			inputs = append(inputs, rotate.Input{Name: string(rune('a' + i)), Data: p})
		}
		c := rotate.Classify(inputs)
		_ = c.Files()
		b, err := rotate.Validate(c, rotate.Policy{Layout: layout, NodeID: "node-1", Now: time.Now()}, nil)
		if err != nil {
			_ = err.Error()
			return
		}
		var again []rotate.Input
		for _, f := range rotate.Plan(b, layout) {
			again = append(again, rotate.Input{Name: f.Name, Data: f.Data})
		}
		b2, err := rotate.Validate(rotate.Classify(again), rotate.Policy{Layout: layout, NodeID: "node-1", Now: time.Now()}, nil)
		if err != nil {
			t.Fatalf("a valid bundle's planned files do not validate: %v", err)
		}
		if !b2.Leaf.Equal(b.Leaf) {
			t.Fatal("planned files classify to another leaf")
		}
	})
}
