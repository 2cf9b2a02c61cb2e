package main

import (
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// A refused install says why once, on stderr, as the command's error: not
// a log line and then the same again (the agent's log keeps its line).
func TestARefusedInstallSaysWhyOnce(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	other := ca.Issue(t, "node-2", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "")
	for _, verbose := range []bool{false, true} {
		args := []string{"install", "--config", n.config}
		if verbose {
			args = append(args, "--verbose")
		}
		r := certkeeper(t, append(args, n.files(map[string][]byte{"n.crt": other.CertPEM(), "n.key": other.KeyPEM(t), "ca.crt": ca.CertPEM()})...)...)
		if r.code != exitFailure || r.stdout != "" {
			t.Fatalf("verbose %v: %+v", verbose, r)
		}
		if got := strings.Count(r.stderr, `this node is "node-1"`); got != 1 || strings.Contains(r.stderr, "delivery refused") || !strings.HasPrefix(r.stderr, "certkeeper install: ") {
			t.Errorf("verbose %v: the refusal is said %d times:\n%s", verbose, got, r.stderr)
		}
	}
}
