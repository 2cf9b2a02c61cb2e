//go:build unix

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// sshServer is a real OpenSSH sshd on a loopback port, as TESTING.md
// describes, for one test.
type sshServer struct {
	port       int
	knownHosts string
}

func startSSHD(t *testing.T, authorizedKeys string) *sshServer {
	t.Helper()
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("%s: %v (scripts/test installs openssh-server)", sshd, err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	ak := testpki.WriteFile(t, dir, "authorized_keys", []byte(authorizedKeys), 0o600)
	port := freePort(t)
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
SetEnv HOME=%s
`, port, hostKey, filepath.Join(dir, "sshd.pid"), ak, dir)
	conf := testpki.WriteFile(t, dir, "sshd_config", []byte(cfg), 0o600)
	cmd := exec.Command(sshd, "-D", "-e", "-f", conf)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("sshd did not stop")
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("sshd did not listen: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	kh := testpki.WriteFile(t, dir, "known_hosts", fmt.Appendf(nil, "[127.0.0.1]:%d %s %s\n", port, f[0], f[1]), 0o600)
	return &sshServer{port: port, knownHosts: kh}
}

// run connects with identity and asks for command; sshd decides what runs.
func (s *sshServer) run(t *testing.T, identity string, stdin []byte, command string) result {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh", "-F", "/dev/null", "-p", fmt.Sprint(s.port), "-i", identity,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+s.knownHosts, "-o", "ConnectTimeout=20",
		u.Username+"@127.0.0.1", command)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

// The authorized_keys line docs/ca.md gives works as written: a node's key
// can only run `ca sign` for its own id, whatever command it asks for.
func TestCASignAsSSHForcedCommand(t *testing.T) {
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "node-1", "--dns", "n1.example.com")
	mustCA(t, "issue", "--dir", dir, "node", "node-2")
	keys := t.TempDir()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "node-1", "-f", filepath.Join(keys, "id_node1")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(filepath.Join(keys, "id_node1.pub"))
	line := fmt.Sprintf("restrict,command=\"%s ca sign --dir %s --node node-1\" %s", binary, dir, strings.TrimSpace(string(pub)))
	srv := startSSHD(t, line+"\n")
	id := filepath.Join(keys, "id_node1")

	csr := csrPEM(t, keys, "", "/CN=node-1", "subjectAltName=DNS:n1.example.com")
	marker := filepath.Join(t.TempDir(), "pwned")
	r := srv.run(t, id, csr, "touch "+marker)
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
	r = srv.run(t, id, csrPEM(t, keys, "", "/CN=node-2"), "")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, `its CN is "node-2", but this node is "node-1"`) {
		t.Fatalf("another node's request over ssh: %+v", r)
	}
}
