//go:build unix

package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// crlInputs is f.inputs with a CRL of the given number.
func (f *fixture) crlInputs(t *testing.T, p *testpki.Pair, number int64) []rotate.Input {
	t.Helper()
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}, f.ca.Cert, f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return append(f.inputs(t, p), rotate.Input{Name: "cluster.crl", Data: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})})
}

// A rollback refuses what changed. Rolled away from a new CRL with the
// same certificate, the set is refused, not the live certificate: the
// same set again is refused, a later CRL is taken (refusing the leaf
// refused every later revocation, found by running the binary). Rolled
// away from a new certificate, the certificate is refused whatever CRL
// comes with it.
func TestARollbackRefusesWhatChanged(t *testing.T) {
	f, b := owedFixture(t, `crl_file = "cluster.crl"`)
	leaf := f.ca.Issue(t, "node-1", testpki.Options{})
	deliver := func(kind agent.Kind, in []rotate.Input) error {
		_, err := agent.Deliver(context.Background(), b, agent.Delivery{Kind: kind, Inputs: in, From: "test"}, quiet)
		return err
	}
	if err := deliver(agent.ByHand, f.crlInputs(t, leaf, 1)); err != nil {
		t.Fatal(err)
	}
	if err := deliver(agent.FromPull, f.crlInputs(t, leaf, 2)); err != nil {
		t.Fatal(err)
	}
	r, err := agent.Rollback(context.Background(), b, false, quiet)
	if err != nil || r.Refused != agent.RefusedSet || r.RefuseErr != nil {
		t.Fatalf("rollback from a CRL-only change: %+v %v, want the set refused", r, err)
	}
	// The generation's own files, as a pull would bring them again.
	gen := r.From
	m := rotate.NewManager(b.Spec())
	files, err := m.Store.ReadGeneration(gen)
	if err != nil {
		t.Fatal(err)
	}
	var same []rotate.Input
	for name, data := range files {
		same = append(same, rotate.Input{Name: name, Data: data})
	}
	if err := deliver(agent.FromPull, same); err == nil || !strings.Contains(err.Error(), "refused here") || !strings.Contains(err.Error(), "another set with it is taken") {
		t.Fatalf("the set rolled away from, offered again: %v, want it refused", err)
	}
	if err := deliver(agent.FromInbox, f.crlInputs(t, leaf, 3)); err != nil {
		t.Fatalf("a later CRL with the live certificate: %v, want it installed", err)
	}
	if live, _, _ := m.Live(); live == nil || len(live.CRLs) != 1 || live.CRLs[0].Number.Int64() != 3 {
		t.Fatalf("live CRL: %+v", live)
	}

	// A new certificate rolled away from: refused with any CRL.
	next := f.ca.Issue(t, "node-1", testpki.Options{})
	if err := deliver(agent.FromPull, f.crlInputs(t, next, 3)); err != nil {
		t.Fatal(err)
	}
	if r, err = agent.Rollback(context.Background(), b, false, quiet); err != nil || r.Refused != agent.RefusedCertificate {
		t.Fatalf("rollback from a new certificate: %+v %v, want the certificate refused", r, err)
	}
	if err := deliver(agent.FromPull, f.crlInputs(t, next, 4)); err == nil || !strings.Contains(err.Error(), "refused here") {
		t.Fatalf("the certificate rolled away from, with a new CRL: %v, want it refused", err)
	}
}

// A failed check rolls back the same way: a CRL that the daemon's check
// fails on is refused as a set; the next CRL is tried.
func TestAFailedCheckOnANewCRLRefusesTheSetNotTheCertificate(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "fail")
	f, b := owedFixture(t, `crl_file = "cluster.crl"
check = ["/bin/sh", "-c", "test ! -e `+mark+`"]`)
	leaf := f.ca.Issue(t, "node-1", testpki.Options{})
	deliver := func(kind agent.Kind, in []rotate.Input) (agent.Outcome, error) {
		return agent.Deliver(context.Background(), b, agent.Delivery{Kind: kind, Inputs: in, From: "test"}, quiet)
	}
	if _, err := deliver(agent.ByHand, f.crlInputs(t, leaf, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mark, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := f.crlInputs(t, leaf, 2)
	out, _ := deliver(agent.FromPull, bad)
	if !out.RolledBack {
		t.Fatalf("the failed check did not roll back: %+v", out)
	}
	os.Remove(mark)
	if _, err := deliver(agent.FromPull, bad); err == nil || !strings.Contains(err.Error(), "refused here") {
		t.Fatalf("the set whose check failed, again: %v, want it refused", err)
	}
	if _, err := deliver(agent.FromPull, f.crlInputs(t, leaf, 3)); err != nil {
		t.Fatalf("the next CRL: %v, want it installed", err)
	}
}
