//go:build unix

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/sdnotifytest"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// The agent started as systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC)
// says READY=1 once its first reconcile is done (a drifted live bundle is
// repaired by then; a bundle waiting in its inbox follows once it has
// settled), pings WATCHDOG=1 at half the watchdog timeout,
// says RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 when
// told to stop, then exits 0.
func TestAgentNotifiesSystemd(t *testing.T) {
	if r := certkeeper(t, "agent", "--help"); r.code != 0 {
		t.Skipf("`certkeeper agent` does not exist on this branch yet; this test checks its sd_notify wiring once it does (%s)", strings.SplitN(r.stderr, "\n", 2)[0])
	}
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	first, leaf := ca.Issue(t, "node-1", testpki.Options{}), ca.Issue(t, "node-1", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "")
	if r := n.install(n.files(map[string][]byte{"a.crt": first.CertPEM(), "a.key": first.KeyPEM(t), "ca.crt": ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	if err := os.Chmod(filepath.Join(n.live, "node.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	inbox := filepath.Join(n.root, "state", "inbox", "b")
	if err := os.MkdirAll(inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, inbox, "8eab.crt", leaf.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "8eab.key", leaf.KeyPEM(t), 0o600)
	testpki.WriteFile(t, inbox, "cluster.crt", ca.CertPEM(), 0o644)

	sock := sdnotifytest.Listen(t)
	cmd := exec.Command(binary, "agent", "--config", n.config)
	cmd.Env = append(os.Environ(), sock.Env(), "WATCHDOG_USEC=2000000")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("agent pid %d still running", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})

	sock.Expect(t, "READY=1", 60*time.Second)
	if fi, err := os.Stat(filepath.Join(n.live, "node.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("READY=1 came before the first reconcile repaired the key's mode: %v %v", fi.Mode(), err)
	}
	installed := false
	for range 100 {
		if b, err := os.ReadFile(filepath.Join(n.live, "node.crt")); err == nil && bytes.Equal(b, leaf.CertPEM()) {
			installed = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !installed {
		t.Error("the inbox's bundle was not live within 5s of READY=1")
	}
	sock.Expect(t, "WATCHDOG=1", 10*time.Second)

	cmd.Process.Signal(syscall.SIGHUP)
	sock.Expect(t, "RELOADING=1", 30*time.Second)
	sock.Expect(t, "READY=1", 30*time.Second)

	cmd.Process.Signal(syscall.SIGTERM)
	sock.Expect(t, "STOPPING=1", 30*time.Second)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM", err)
		}
		exited <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Error("agent did not exit within 30s of SIGTERM")
	}
}
