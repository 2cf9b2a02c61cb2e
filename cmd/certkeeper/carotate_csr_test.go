//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// A CA rotation with nodes in CSR mode (their keys live on the nodes;
// they renew through the forced `certkeeper ca sign` over a real sshd),
// each with a real agent: the two-CA trust file reaches them by the
// inbox (as a push delivers), even after they renewed by CSR; `issue`
// leaves them waiting; `finish` is refused, naming them, while any holds
// an old-CA leaf; each gets a new-CA certificate at its next request; then
// `finish` goes through and the new CA alone reaches them. `ca rotate
// status --inventory` shows what each node installed, read from its
// report over SSH.
func TestCARotationWithCSRNodes(t *testing.T) {
	h := newAdminHost(t, "", "csr", "csr")
	h.start("")
	// The nodes' own sshd, for the admin host to read their reports.
	nodeSSHD := testsshd.Start(t, testsshd.Options{})
	var inv strings.Builder
	for _, n := range h.nodes {
		n.agent = startAgent(t, n.config)
		fmt.Fprintf(&inv, "[[node]]\nid = %q\naddress = %q\nuser = %q\nidentity_file = %q\nknown_hosts = %q\nreport = %q\ntarget = \"/var/lib/certkeeper/inbox/b\"\n\n",
			n.id, nodeSSHD.Addr, nodeSSHD.User, nodeSSHD.Client.Path, nodeSSHD.KnownHosts, filepath.Join(n.root, "state", "report.json"))
	}
	fleetInv := testpki.WriteFile(t, t.TempDir(), "fleet.toml", []byte(inv.String()), 0o600)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range h.nodes {
				t.Logf("%s's agent:\n%s", n.id, n.agent.log())
			}
		}
	})
	csr1, csr2 := h.nodes[0], h.nodes[1]
	renew := func(n *renewNode) {
		t.Helper()
		if r := certkeeper(t, "renew", "--config", n.config, "--force"); r.code != 0 || !strings.Contains(r.stdout, "renewed by csr") {
			t.Fatalf("renew --force of %s: %+v", n.id, r)
		}
	}
	liveLeaf := func(n *renewNode) []byte { return mustRead(t, filepath.Join(n.live, "node.crt")) }
	issuedBy := func(n *renewNode, caPEM []byte) bool {
		c, err := pki.Parse(liveLeaf(n))
		ca, err2 := pki.Parse(caPEM)
		return err == nil && err2 == nil && c.Certificates[0].CheckSignatureFrom(ca.Certificates[0]) == nil
	}
	// deliver drops a node's publish directory into its agent's inbox, as
	// `certkeeper push` does, and waits until the agent took it and its
	// live cluster.crt is the published one.
	deliver := func(step string) {
		t.Helper()
		for _, n := range h.nodes {
			inbox := filepath.Join(n.root, "state", "inbox", "b")
			pub := filepath.Join(h.ca, "nodes", n.id)
			ents, err := os.ReadDir(pub)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				testpki.WriteFile(t, inbox, e.Name(), mustRead(t, filepath.Join(pub, e.Name())), 0o600)
			}
			waitFor(t, n.id+"'s inbox to be taken after "+step, func() bool { return len(inboxFiles(inbox)) == 0 })
			if live, want := mustRead(t, filepath.Join(n.live, "cluster.crt")), mustRead(t, filepath.Join(pub, "cluster.crt")); !bytes.Equal(live, want) {
				t.Fatalf("%s did not install the cluster.crt of %s (%d CAs live, %d published):\n%s", n.id, step,
					strings.Count(string(live), "BEGIN"), strings.Count(string(want), "BEGIN"), n.agent.log())
			}
		}
	}
	status := func() string {
		t.Helper()
		r := certkeeper(t, "ca", "rotate", "status", "--dir", h.ca, "--inventory", fleetInv)
		if r.code != 0 {
			t.Fatalf("ca rotate status --inventory: %+v", r)
		}
		return r.stdout
	}
	installedCol := func(st, id string) string {
		for _, l := range strings.Split(st, "\n") {
			if f := strings.Fields(l); len(f) >= 6 && f[0] == id {
				return f[len(f)-1]
			}
		}
		return ""
	}
	waitInstalled := func(id, want string) {
		t.Helper()
		var st string
		waitFor(t, id+" INSTALLED "+want, func() bool { st = status(); return installedCol(st, id) == want })
	}

	// Both renewed by CSR before the rotation (CSR mode's steady state:
	// their keys were made on the nodes, and their live leaves are newer
	// than the bundle `ca issue` published first).
	renew(csr1)
	renew(csr2)
	oldCA := mustRead(t, filepath.Join(h.ca, "cluster.crt"))

	mustCA(t, "rotate", "start", "--dir", h.ca)
	deliver("start")
	r := mustCA(t, "rotate", "issue", "--dir", h.ca)
	if !strings.Contains(r.stdout, "CSR-mode, new-CA certificate at their next request: csr-1, csr-2") {
		t.Fatalf("ca rotate issue: %+v", r)
	}
	for _, n := range h.nodes {
		waitInstalled(n.id, "old")
	}
	fin := certkeeper(t, "ca", "rotate", "finish", "--dir", h.ca)
	if fin.code != 1 || !strings.Contains(fin.stderr, "2 node(s) still hold a certificate from the old CA: csr-1, csr-2") {
		t.Fatalf("finish before the CSR nodes renewed: %+v", fin)
	}

	// csr-1's next request: a new-CA leaf, installed under the two-CA trust.
	renew(csr1)
	if issuedBy(csr1, oldCA) {
		t.Fatal("csr-1's renewal after issue is still the old CA's")
	}
	waitInstalled("csr-1", "new")
	fin = certkeeper(t, "ca", "rotate", "finish", "--dir", h.ca)
	if fin.code != 1 || !strings.Contains(fin.stderr, "1 node(s) still hold a certificate from the old CA: csr-2") {
		t.Fatalf("finish with csr-2 on the old CA: %+v", fin)
	}
	if st := status(); installedCol(st, "csr-2") != "old" || !strings.Contains(st, "still on the old CA: csr-2") {
		t.Fatalf("status:\n%s", st)
	}

	renew(csr2)
	waitInstalled("csr-2", "new")
	mustCA(t, "rotate", "finish", "--dir", h.ca)
	deliver("finish")
	for _, n := range h.nodes {
		trust := mustRead(t, filepath.Join(n.live, "cluster.crt"))
		if strings.Count(string(trust), "BEGIN CERTIFICATE") != 1 || !issuedBy(n, trust) {
			t.Errorf("%s after finish: its live leaf does not chain to the new CA alone", n.id)
		}
		// One reload per change: the CSR renewal before, the two-CA trust
		// file, the new-CA leaf, the new CA alone.
		waitFor(t, n.id+"'s fourth reload", func() bool { return n.daemonReloads() >= 4 })
		if got := n.daemonReloads(); got != 4 {
			t.Errorf("%s: %d reloads for 4 changes", n.id, got)
		}
		if strings.Contains(n.agent.log(), "allow_ca_change") {
			t.Errorf("%s refused a step:\n%s", n.id, n.agent.log())
		}
	}
	t.Logf("CSR-mode rotation: finish refused twice (naming the nodes still on the old CA), then done; reloads csr-1=%d csr-2=%d",
		csr1.daemonReloads(), csr2.daemonReloads())
}
