package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// certkeeper verify of a reign certificate without the node id as a SAN
// (CN = the id, no SANs, as the old guide's openssl recipe made them):
// the bundle is valid, so exit 0, but a WARNING line says reign will
// refuse it and names the command that fixes it, in one pair of
// parentheses. With the id as a SAN there is no warning.
func TestVerifyWarnsOfACertificateWithoutTheIDSAN(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "signing", testpki.Options{})
	testpki.WriteFile(t, dir, "signing.crt", ca.CertPEM(), 0o644)
	old := ca.Issue(t, "1", testpki.Options{}) // CN only
	testpki.WriteFile(t, dir, "node.1.crt", old.CertPEM(), 0o644)
	testpki.WriteFile(t, dir, "node.1.key", old.KeyPEM(t), 0o600)
	files := []string{filepath.Join(dir, "signing.crt"), filepath.Join(dir, "node.1.crt"), filepath.Join(dir, "node.1.key")}

	code, stdout, stderr := runIn(append([]string{"verify", "--layout", "reign", "--node-id", "1"}, files...)...)
	if code != 0 || !strings.HasPrefix(stdout, "OK: 3 file(s) form a valid bundle for node \"1\"") {
		t.Fatalf("verify of a CN-only reign certificate: exit %d, want 0 with OK\n%s%s", code, stdout, stderr)
	}
	var warning string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "WARNING: ") {
			if warning != "" {
				t.Fatalf("more than one WARNING line:\n%s", stdout)
			}
			warning = line
		}
	}
	want := `WARNING: node.1.crt: certificate has no SANs; reign will refuse it: a node dialling this one sets ServerName "1" and Go verifies SANs only (x509: certificate relies on legacy Common Name field) (re-issue it on the admin host: certkeeper ca issue node 1 --force; names are kept, and a node in CSR mode gets the SAN at its next renewal)`
	if warning != want {
		t.Fatalf("the warning:\n got %s\nwant %s", warning, want)
	}
	if strings.Contains(warning, "))") {
		t.Fatalf("doubled parentheses: %s", warning)
	}

	// --json carries the same warning.
	code, stdout, _ = runIn(append([]string{"verify", "--layout", "reign", "--node-id", "1", "--json"}, files...)...)
	var v verifyJSON
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || !v.Valid || len(v.Warnings) != 1 || "WARNING: "+v.Warnings[0] != want {
		t.Fatalf("verify --json: exit %d, %v: %+v", code, err, v)
	}

	// Re-issued with the id as a SAN, as certkeeper's CA does: no warning.
	good := ca.Issue(t, "1", testpki.Options{DNS: []string{"1"}})
	testpki.WriteFile(t, dir, "node.1.crt", good.CertPEM(), 0o644)
	testpki.WriteFile(t, dir, "node.1.key", good.KeyPEM(t), 0o600)
	code, stdout, stderr = runIn(append([]string{"verify", "--layout", "reign", "--node-id", "1"}, files...)...)
	if code != 0 || strings.Contains(stdout, "WARNING") {
		t.Fatalf("verify of a certificate with the id SAN: exit %d\n%s%s", code, stdout, stderr)
	}
}
