//go:build linux

package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// Two real admin hosts (two sshd, each with its own pinned host key): the
// nodes list both as [[source]]. With the first stopped mid-run, CSR
// renewals and pulls go on from the second, and status says which one
// answered.
func TestFailoverToASecondAdminHost(t *testing.T) {
	h := newAdminHost(t, "", "csr", "pull")
	h.start("")
	second := testsshd.Start(t, testsshd.Options{AuthorizedKeys: h.authorizedKeys()})
	src := regexp.MustCompile(`(?s)\[source\].*?timeout = "20s"\n`)
	for _, n := range h.nodes {
		cfg, err := os.ReadFile(n.config)
		if err != nil {
			t.Fatal(err)
		}
		block := func(addr, kh string) string {
			return fmt.Sprintf("[[source]]\naddress = %q\nuser = \"root\"\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"5s\"\n\n", addr, n.key.Path, kh)
		}
		two := block(h.sshd.Addr, h.sshd.KnownHosts) + block(second.Addr, second.KnownHosts)
		if !src.Match(cfg) {
			t.Fatalf("no [source] in:\n%s", cfg)
		}
		os.WriteFile(n.config, src.ReplaceAll(cfg, []byte(two)), 0o600)
	}
	csr, pull := h.nodes[0], h.nodes[1]

	// Both up: the first answers.
	r := certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "ssh://root@"+h.sshd.Addr+" (ca sign) (source 1 of 2)") {
		t.Fatalf("renew with both admin hosts up: %+v", r)
	}

	// The first admin host goes down: the second signs.
	h.sshd.Stop()
	r = certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "ssh://root@"+second.Addr+" (ca sign) (source 2 of 2)") {
		t.Fatalf("CSR renewal with the first admin host down: %+v", r)
	}
	if !strings.Contains(r.stderr, "source failover") && !strings.Contains(r.stdout+r.stderr, second.Addr) {
		t.Fatalf("no word of the failover: %+v", r)
	}
	st := certkeeper(t, "status", "--config", csr.config)
	if !strings.Contains(st.stdout, second.Addr+" (ca sign) (source 2 of 2)") {
		t.Fatalf("status does not say which source answered:\n%s", st.stdout)
	}

	// Pull: re-issued on the CA, published; the second admin host serves it.
	mustCA(t, "renew", "--dir", h.ca, "--within", "100d")
	if r := h.publish(); r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	r = certkeeper(t, "renew", "--config", pull.config, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "b: renewed by pull from sftp://root@"+second.Addr) {
		t.Fatalf("pull with the first admin host down: %+v", r)
	}
	// `certkeeper pull` fails over too: nothing newer now, from the second.
	r = certkeeper(t, "pull", "--config", pull.config)
	if r.code != 0 || !strings.Contains(r.stdout, second.Addr) {
		t.Fatalf("pull command with the first admin host down: %+v", r)
	}
	st = certkeeper(t, "status", "--config", pull.config)
	if !strings.Contains(st.stdout, "sftp://root@"+second.Addr) || !strings.Contains(st.stdout, "(source 2 of 2)") {
		t.Fatalf("status does not say which source answered:\n%s", st.stdout)
	}

	// Both down: the error names each.
	second.Stop()
	r = certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 1 || !strings.Contains(r.stderr, "every admin host failed (2 sources)") || !strings.Contains(r.stderr, h.sshd.Addr) || !strings.Contains(r.stderr, second.Addr) {
		t.Fatalf("renew with both down: %+v", r)
	}
}
