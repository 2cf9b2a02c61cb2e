//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An admin's hand-in and a node's own request, as a CA admin sees them:
// `ca sign` run by hand for a pushed node records the certificate and
// keeps the node's mode (its published bundle, key included, stays what
// push sends; ca renew still renews it), and says so; the same command
// run by a real sshd as the node's forced command turns that node to CSR
// mode (a pull+csr node's first renewal), and says so too. ca renew
// --inventory leaves a pull+csr node's first certificate to its agent.
func TestCASignKeepsOrChangesTheModeAndSaysSo(t *testing.T) {
	dir := newCADir(t)
	for _, id := range []string{"pushed", "pulled", "pullcsr"} {
		mustCA(t, "issue", "--dir", dir, "node", id)
	}
	work := t.TempDir()
	published := func(id string) bool {
		_, err := os.Stat(filepath.Join(dir, "nodes", id, "node.key"))
		return err == nil
	}

	// By hand (no sshd, so no SSH_ORIGINAL_COMMAND).
	r := certkeeperIn(t, csrPEM(t, work, "", "/CN=pushed"), "ca", "sign", "--dir", dir, "--node", "pushed")
	if r.code != 0 || !strings.Contains(r.stderr, "node pushed: recorded certificate ") || !strings.Contains(r.stderr, "the node keeps its mode (its key is made here, source issue): its published bundle is unchanged, and ca renew re-issues it in its window") {
		t.Fatalf("hand-in: %+v", r)
	}
	if !published("pushed") {
		t.Fatal("a hand-in removed the pushed node's published key: push would send a certificate without it")
	}

	// Through a real sshd's forced command, as the node's agent asks.
	srv, id := forcedSign(t, dir, "pulled")
	r = sshRun(t, srv, id, csrPEM(t, work, "", "/CN=pulled"), "certkeeper ca sign")
	if r.code != 0 || strings.Count(r.stdout, "BEGIN CERTIFICATE") != 1 || !strings.Contains(r.stderr, "node pulled: its own agent asked (forced command): it renews by CSR from now on") {
		t.Fatalf("forced command: %+v", r)
	}
	if published("pulled") {
		t.Fatal("a CSR-mode node's publish directory still holds the key ca issue made")
	}

	inv := filepath.Join(work, "nodes.toml")
	if err := os.WriteFile(inv, []byte(`[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"

[[node]]
id = "pushed"
address = "10.0.0.1"

[[node]]
id = "pulled"
address = "10.0.0.2"
mode = "pull+csr"

[[node]]
id = "pullcsr"
address = "10.0.0.3"
mode = "pull+csr"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A window longer than any lifetime: every node is due.
	for _, c := range []struct {
		args []string
		want []string
		not  []string
	}{
		{nil,
			[]string{"would renew node pushed", "would renew node pullcsr", "skipped pulled: its key lives on the node (CSR mode)"},
			[]string{"skipped pushed"}},
		{[]string{"--inventory", inv},
			[]string{"would renew node pushed", "skipped pullcsr: the inventory has it renew by CSR: its agent asks `ca sign` for its first renewal, in its own window", "skipped pulled: its key lives on the node (CSR mode)"},
			[]string{"would renew node pullcsr"}},
	} {
		r := mustCA(t, append([]string{"renew", "--dir", dir, "--within", "3650d", "--dry-run"}, c.args...)...)
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("ca renew %v: no %q in\n%s", c.args, w, r.stdout)
			}
		}
		for _, w := range c.not {
			if strings.Contains(r.stdout, w) {
				t.Errorf("ca renew %v: %q in\n%s", c.args, w, r.stdout)
			}
		}
	}
}
