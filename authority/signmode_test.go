package authority

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

func TestSignMode(t *testing.T) {
	for _, c := range []struct {
		name     string
		n        *NodeRecord
		handedIn bool
		src      Source
		change   ModeChange
	}{
		{"a new node: CSR mode", nil, false, SourceCSR, ""},
		{"a new node, handed in: CSR mode (nothing to keep)", nil, true, SourceCSR, ""},
		{"a CSR-mode node stays", &NodeRecord{Source: SourceCSR}, false, SourceCSR, ""},
		{"a CSR-mode node, handed in, stays", &NodeRecord{Source: SourceCSR}, true, SourceCSR, ""},
		{"a pushed node, handed in: keeps its mode", &NodeRecord{Source: SourceIssue}, true, SourceIssue, KeptMode},
		{"a renewed node, handed in: keeps its mode", &NodeRecord{Source: SourceRenew}, true, SourceRenew, KeptMode},
		{"a pulled node's own agent (pull+csr's first CSR): CSR mode", &NodeRecord{Source: SourceIssue}, false, SourceCSR, ConvertedToCSR},
	} {
		src, change := SignMode(c.n, c.handedIn)
		if src != c.src || change != c.change {
			t.Errorf("%s: SignMode = %q, %q; want %q, %q", c.name, src, change, c.src, c.change)
		}
	}
}

// An admin hands in a CSR for a pushed node: the certificate is recorded
// as its current one, and nothing else about the node changes: its mode,
// its key type, its published bundle (key included, what push sends), and
// ca renew still re-issues it, with a key made here, in its window. A
// plain ca issue does not take the hand-in for an interrupted issue.
func TestSignHandedInKeepsThePushNodesMode(t *testing.T) {
	clk := &clock{t: time.Now().UTC()}
	a := newCA(t, Options{Now: clk.now}, nil)
	r, _ := NodeRequest("node-1", Names{}, "")
	issue(t, a, []Request{r}, IssueOptions{})
	dir := filepath.Join(a.Dir, NodesDir, "node-1")
	crt0, _ := os.ReadFile(filepath.Join(dir, "node.crt"))
	key0, _ := os.ReadFile(filepath.Join(dir, "node.key"))
	key, _ := pki.GenerateKey(pki.ECDSAP384, rand.Reader)
	s, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{HandedIn: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode != KeptMode || s.Was != SourceIssue {
		t.Fatalf("mode %q was %q, want kept, issue", s.Mode, s.Was)
	}
	n := nodeRecord(t, a, "node-1")
	if n.Source != SourceIssue || n.KeyType != string(pki.ECDSAP256) || n.Current != FormatSerial(s.Chain[0].SerialNumber) {
		t.Fatalf("node record %+v: want source issue, key type ecdsa-p256, current the signed serial", n)
	}
	crt, _ := os.ReadFile(filepath.Join(dir, "node.crt"))
	k, err := os.ReadFile(filepath.Join(dir, "node.key"))
	if err != nil || string(crt) != string(crt0) || string(k) != string(key0) {
		t.Fatalf("the published bundle changed (key: %v)", err)
	}
	if _, err := a.Issue(t.Context(), []Request{r}, IssueOptions{}); err == nil {
		t.Fatal("a plain ca issue re-issued a node whose current certificate was handed in")
	}
	clk.add(60 * 24 * time.Hour) // 30 of the default 90 days left
	res, err := a.Renew(t.Context(), RenewOptions{Within: DefaultWindow})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Issued) != 1 || res.Issued[0].ID != "node-1" || len(res.Skipped) != 0 {
		t.Fatalf("ca renew: issued %+v, skipped %+v; want node-1 renewed", res.Issued, res.Skipped)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.key")); err != nil {
		t.Fatalf("the renewed bundle has no key: %v", err)
	}
	// Through the forced command (not handed in), the same node's agent
	// turns it to CSR mode, as a pull+csr node's first request does.
	s, err = a.Sign("node-1", csr(t, key, "node-1"), SignOptions{})
	if err != nil || s.Mode != ConvertedToCSR || nodeRecord(t, a, "node-1").Source != SourceCSR {
		t.Fatalf("the node's own request: %v, mode %q", err, s.Mode)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.key")); !os.IsNotExist(err) {
		t.Fatalf("a CSR-mode node's publish directory still has a key: %v", err)
	}
}

// ca renew with the inventory's CSR nodes leaves a pull+csr node's first
// certificate to its agent.
func TestRenewLeavesAPullCSRNodesFirstCertificate(t *testing.T) {
	clk := &clock{t: time.Now().UTC()}
	a := newCA(t, Options{Now: clk.now}, nil)
	issue(t, a, nodes(t, "pull-1", "pullcsr-1"), IssueOptions{})
	clk.add(60 * 24 * time.Hour)
	res, err := a.Renew(t.Context(), RenewOptions{Within: DefaultWindow, CSR: map[string]bool{"pullcsr-1": true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Issued) != 1 || res.Issued[0].ID != "pull-1" || len(res.Skipped) != 1 || res.Skipped[0].ID != "pullcsr-1" {
		t.Fatalf("issued %+v, skipped %+v; want pull-1 renewed, pullcsr-1 skipped", res.Issued, res.Skipped)
	}
}
