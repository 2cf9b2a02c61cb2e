//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/doctest"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// docs/admin-host.md §10's standby, with the doc's own script over a real
// sshd: the CA directory copied with rsync under a shared lock on ca.db
// (flock(1) takes the same kind of lock as bbolt, so a `ca` command that
// writes waits for the copy). The copy keeps the modes, lists what the
// primary issued and signs a node's CSR with the same CA; once it signed,
// the next copy refuses to overwrite it until the admin reconciles.
func TestCADirectoryCopiedWithRsyncWorksOnTheStandby(t *testing.T) {
	for _, tool := range []string{"rsync", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (Debian: apt-get install %s); the recipe needs it", tool, map[string]string{"rsync": "rsync", "flock": "util-linux"}[tool])
		}
	}
	primary := newCADir(t)
	mustCA(t, "issue", "--dir", primary, "node", "node-1", "--dns", "n1.example.com")
	standby := filepath.Join(t.TempDir(), "ca")

	// A copy in progress holds the shared lock: a writer waits for it.
	hold := exec.Command("flock", "-s", filepath.Join(primary, "ca.db"), "sleep", "1.5")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Wait()
	time.Sleep(300 * time.Millisecond) // the holder has its lock
	began := time.Now()
	mustCA(t, "issue", "--dir", primary, "node", "node-2")
	if waited := time.Since(began); waited < 800*time.Millisecond {
		t.Errorf("ca issue ran in %s while the copy held ca.db: bbolt's lock and flock(1)'s do not meet", waited)
	} else {
		t.Logf("ca issue waited %s for the copy's lock", waited.Round(10*time.Millisecond))
	}
	if err := hold.Wait(); err != nil {
		t.Fatal(err)
	}

	// The doc's script, copying over a real sshd (the standby is this
	// machine, its CA directory another path).
	script := standbyScript(t)
	sshd := testsshd.Start(t, testsshd.Options{})
	sum := filepath.Join(t.TempDir(), "standby-ca.db.sha256")
	copyTo := func(from, to, sum string) result {
		t.Helper()
		cmd := exec.Command("sh", script)
		cmd.Env = append(os.Environ(), "CA="+from, "STANDBY=root@127.0.0.1", "STANDBY_CA="+to, "SUM="+sum,
			fmt.Sprintf("SSH=ssh -p %d -i %s -o UserKnownHostsFile=%s -o BatchMode=yes -o IdentitiesOnly=yes", sshd.Port, sshd.Client.Path, sshd.KnownHosts))
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	if r := copyTo(primary, standby, sum); r.code != 0 {
		t.Fatalf("certkeeper-standby-copy: %+v", r)
	}
	for name, want := range map[string]os.FileMode{"cluster.key": 0o600, "ca.db": 0o600, ".": 0o700, "nodes/node-1/node.key": 0o600} {
		fi, err := os.Stat(filepath.Join(standby, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("standby %s: %v %v, want %o", name, fi.Mode().Perm(), err, want)
		}
	}
	lists := func(dir, id string) bool {
		l := certkeeper(t, "ca", "list", "--dir", dir)
		if l.code != 0 {
			t.Fatalf("ca list --dir %s: %+v", dir, l)
		}
		return strings.Contains(l.stdout, id)
	}
	if !lists(standby, "node-1") || !lists(standby, "node-2") {
		t.Fatal("the standby does not list what the primary issued")
	}
	work := t.TempDir()
	csr := csrPEM(t, work, "", "/CN=node-1", "subjectAltName=DNS:n1.example.com")
	r := certkeeperIn(t, csr, "ca", "sign", "--dir", standby, "--node", "node-1")
	if r.code != 0 || strings.Count(r.stdout, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("ca sign on the standby: %+v", r)
	}
	testpki.WriteFile(t, work, "signed.crt", []byte(r.stdout), 0o644)
	// The primary's CA certificate verifies what the standby signed.
	testpki.OpenSSL(t, work, "verify", "-CAfile", filepath.Join(primary, "cluster.crt"), "signed.crt")

	// The standby signed (an outage): the next copy refuses to drop it,
	// even a change within the second at the same size.
	mustCA(t, "issue", "--dir", primary, "node", "node-3")
	r = copyTo(primary, standby, sum)
	if r.code != 1 || !strings.Contains(r.stderr, "changed since the last copy (the standby signed or issued): reconcile first") {
		t.Fatalf("copy over a standby that signed: %+v", r)
	}
	t.Logf("certkeeper-standby-copy over a standby that signed: %s", strings.TrimSpace(r.stderr))
	if lists(standby, "node-3") {
		t.Fatal("the refused copy copied")
	}
	// Reconcile as the doc says when both wrote: keep the primary's,
	// remove the sum, copy again.
	os.Remove(sum)
	if r := copyTo(primary, standby, sum); r.code != 0 || !lists(standby, "node-3") {
		t.Fatalf("copy after reconciling: %+v", r)
	}
	// And the quick-check trap: the primary changes ca.db within the
	// second, at the same size; --checksum copies it all the same.
	fi0, _ := os.Stat(filepath.Join(primary, "ca.db"))
	mustCA(t, "issue", "--dir", primary, "node", "node-4")
	fi1, _ := os.Stat(filepath.Join(primary, "ca.db"))
	if r := copyTo(primary, standby, sum); r.code != 0 || !lists(standby, "node-4") {
		t.Fatalf("copy of a change at the same size (%d -> %d bytes): %+v", fi0.Size(), fi1.Size(), r)
	}
}

// standbyScript writes docs/admin-host.md's certkeeper-standby-copy to a
// file and returns its path.
func standbyScript(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "admin-host.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range doctest.Blocks("admin-host.md", doc) {
		if strings.Contains(b.Text, "# certkeeper-standby-copy:") {
			return testpki.WriteFile(t, t.TempDir(), "certkeeper-standby-copy", []byte(b.Text), 0o700)
		}
	}
	t.Fatal("docs/admin-host.md has no certkeeper-standby-copy script")
	return ""
}
