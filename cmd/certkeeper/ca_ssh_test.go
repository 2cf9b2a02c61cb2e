//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// sshRun connects to a real sshd with identity and asks for command;
// sshd's authorized_keys decides what actually runs. It uses OpenSSH's own
// client, as a node's admin would to try the forced command by hand.
func sshRun(t *testing.T, s *testsshd.Server, identity string, stdin []byte, command string) result {
	t.Helper()
	cmd := exec.Command("ssh", "-F", "/dev/null", "-p", fmt.Sprint(s.Port), "-i", identity,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+s.KnownHosts, "-o", "ConnectTimeout=20",
		s.User+"@127.0.0.1", command)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

// forcedSign starts a real sshd whose only key, made here with
// ssh-keygen, may run nothing but `ca sign --dir dir --node node`: the
// authorized_keys line docs/ca.md gives. It returns the server and the
// key's identity file.
func forcedSign(t *testing.T, dir, node string) (*testsshd.Server, string) {
	t.Helper()
	id := filepath.Join(t.TempDir(), "id_"+node)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node, "-f", id).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(id + ".pub")
	line := fmt.Sprintf("restrict,command=\"%s ca sign --dir %s --node %s\" %s", binary, dir, node, strings.TrimSpace(string(pub)))
	return testsshd.Start(t, testsshd.Options{AuthorizedKeys: line + "\n"}), id
}

// The authorized_keys line docs/ca.md gives works as written: a node's key
// can only run `ca sign` for its own id, whatever command it asks for.
func TestCASignAsSSHForcedCommand(t *testing.T) {
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "node-1", "--dns", "n1.example.com")
	mustCA(t, "issue", "--dir", dir, "node", "node-2")
	srv, id := forcedSign(t, dir, "node-1")
	keys := t.TempDir()

	csr := csrPEM(t, keys, "", "/CN=node-1", "subjectAltName=DNS:n1.example.com")
	marker := filepath.Join(t.TempDir(), "pwned")
	r := sshRun(t, srv, id, csr, "touch "+marker)
	if r.code != 0 || strings.Count(r.stdout, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("ca sign over ssh: %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the node ran its own command instead of the forced one")
	}
	testpki.WriteFile(t, keys, "signed.crt", []byte(r.stdout), 0o644)
	if out := testpki.OpenSSL(t, keys, "x509", "-in", "signed.crt", "-noout", "-subject", "-ext", "subjectAltName"); !strings.Contains(out, "CN = node-1") || !strings.Contains(out, "DNS:n1.example.com") {
		t.Fatalf("signed certificate:\n%s", out)
	}
	testpki.OpenSSL(t, keys, "verify", "-CAfile", filepath.Join(dir, "cluster.crt"), "signed.crt")

	// The same key asking for node-2's certificate is refused, and says why.
	r = sshRun(t, srv, id, csrPEM(t, keys, "", "/CN=node-2"), "")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, `its CN is "node-2", but this node is "node-1"`) {
		t.Fatalf("another node's request over ssh: %+v", r)
	}
}
