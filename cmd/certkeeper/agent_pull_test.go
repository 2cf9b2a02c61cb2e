//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// The daemon, given a [source], pulls from a real sshd as soon as its
// bundle is in the renewal window, and installs the newer bundle once.
func TestAgentPullsFromTheAdminHostInTheRenewalWindow(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	config, remote, live, ca := pullNode(t, s, s.KnownHosts)
	now := time.Now()
	// Live: a minute-long certificate 45 s into its life, past the 2/3 mark.
	aging := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-45 * time.Second), NotAfter: now.Add(15 * time.Second)})
	in := t.TempDir()
	r := certkeeper(t, "install", "--config", config,
		testpki.WriteFile(t, in, "a.crt", aging.CertPEM(), 0o644), testpki.WriteFile(t, in, "a.key", aging.KeyPEM(t), 0o600),
		testpki.WriteFile(t, in, "ca.crt", ca.CertPEM(), 0o644))
	if r.code != 0 {
		t.Fatal(r)
	}
	// The admin host has re-issued: a certificate issued after the live one.
	renewed := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Second), NotAfter: now.Add(time.Hour)})
	fresh := renewed.CertPEM()
	testpki.WriteFile(t, remote, "node.crt", fresh, 0o644)
	testpki.WriteFile(t, remote, "node.key", renewed.KeyPEM(t), 0o600)
	a := startAgent(t, config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log())
		}
	})
	waitFor(t, "the pulled certificate to be live", func() bool {
		b, _ := os.ReadFile(filepath.Join(live, "node.crt"))
		return bytes.Equal(b, fresh)
	})
	a.stop(t)
	if got := strings.Count(a.log(), "msg=installed"); got != 1 {
		t.Errorf("%d installs, want 1:\n%s", got, a.log())
	}
	if !strings.Contains(a.log(), "source=\"pull: sftp://"+s.User+"@"+s.Addr) {
		t.Errorf("the install does not name the admin host:\n%s", a.log())
	}
}

// A rollback by hand sticks: the next pull does not bring the certificate
// back from the admin host, and a newer one is taken as usual.
func TestRollbackIsNotUndoneByTheNextPull(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	config, remote, live, ca := pullNode(t, s, s.KnownHosts)
	publish, liveCert := publisher(t, remote, live)
	now := time.Now()
	a := publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-3 * time.Minute)}))
	if r := certkeeper(t, "pull", "--config", config); r.code != 0 || !bytes.Equal(liveCert(), a) {
		t.Fatalf("first pull: %+v", r)
	}
	b := publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-2 * time.Minute)}))
	if r := certkeeper(t, "pull", "--config", config); r.code != 0 || !bytes.Equal(liveCert(), b) {
		t.Fatalf("second pull: %+v", r)
	}
	r := certkeeper(t, "rollback", "--config", config, "--bundle", "flocker")
	if r.code != 0 || !bytes.Equal(liveCert(), a) || !strings.Contains(r.stdout, "refused from the admin host") {
		t.Fatalf("rollback: %+v", r)
	}
	r = certkeeper(t, "pull", "--config", config)
	if r.code != 1 || !strings.Contains(r.stderr, "which is refused here (rolled back by hand") || !bytes.Equal(liveCert(), a) {
		t.Fatalf("pull after the rollback: %+v", r)
	}
	c := publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Minute)}))
	if r := certkeeper(t, "pull", "--config", config); r.code != 0 || !bytes.Equal(liveCert(), c) {
		t.Fatalf("pull of a newer certificate: %+v", r)
	}
}

// renew --force and pull run the bundle's check after the install, as the
// agent does: a failing check rolls back, exits 1 saying so, and the
// certificate it failed on is not pulled again.
func TestRenewAndPullRollBackWhenTheCheckFails(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	config, remote, live, ca := pullNode(t, s, s.KnownHosts)
	broken := filepath.Join(t.TempDir(), "broken")
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "check = [\"/bin/sh\", \"-c\", \"test ! -e %s\"]\n", broken)
	f.Close()
	publish, liveCert := publisher(t, remote, live)
	now := time.Now()
	a := publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-3 * time.Minute)}))
	if r := certkeeper(t, "pull", "--config", config); r.code != 0 || !bytes.Equal(liveCert(), a) {
		t.Fatalf("first pull: %+v", r)
	}
	testpki.WriteFile(t, filepath.Dir(broken), "broken", nil, 0o600)
	publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-2 * time.Minute)}))
	r := certkeeper(t, "renew", "--config", config, "--force")
	if r.code != 1 || !strings.Contains(r.stderr, "check failed after installing ..gen-000002, rolled back to ..gen-000001") || !bytes.Equal(liveCert(), a) {
		t.Fatalf("renew --force with a failing check: %+v", r)
	}
	r = certkeeper(t, "pull", "--config", config)
	if r.code != 1 || !strings.Contains(r.stderr, "which is refused here (its check failed") || !bytes.Equal(liveCert(), a) {
		t.Fatalf("pull after the rollback: %+v", r)
	}
	publish(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Minute)}))
	r = certkeeper(t, "pull", "--config", config)
	if r.code != 1 || !strings.Contains(r.stderr, "check failed after installing") || !strings.Contains(r.stderr, "rolled back to") || !bytes.Equal(liveCert(), a) {
		t.Fatalf("pull with a failing check: %+v", r)
	}
}

// publisher puts a node's certificate and key where the admin host serves
// them (remote), and reads the node's live certificate.
func publisher(t *testing.T, remote, live string) (publish func(*testpki.Pair) []byte, liveCert func() []byte) {
	publish = func(p *testpki.Pair) []byte {
		testpki.WriteFile(t, remote, "node.crt", p.CertPEM(), 0o644)
		testpki.WriteFile(t, remote, "node.key", p.KeyPEM(t), 0o600)
		return p.CertPEM()
	}
	liveCert = func() []byte { b, _ := os.ReadFile(filepath.Join(live, "node.crt")); return b }
	return publish, liveCert
}
