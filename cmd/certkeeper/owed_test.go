//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// certkeeper install killed in the middle of its reload (the reload
// command kills it, as an OOM killer or a lost SSH session would): status,
// status --json and check say the reload is owed, and installing the same
// files again runs it, once, instead of answering "unchanged".
func TestAnInstallKilledDuringItsReloadIsReloadedByTheNextInstall(t *testing.T) {
	root := t.TempDir()
	flag, log := filepath.Join(root, "kill-once"), filepath.Join(root, "reloads")
	reload := fmt.Sprintf(`if [ -e %s ]; then rm %s; kill -9 $PPID; exit 0; fi; echo reload >> %s`, flag, flag, log)
	n := newNode(t, "flocker-node", "node-1", fmt.Sprintf("  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", %q]\n", reload))
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	p := ca.Issue(t, "node-1", testpki.Options{})
	files := n.files(map[string][]byte{"n.crt": p.CertPEM(), "n.key": p.KeyPEM(t), "ca.crt": ca.CertPEM()})
	reloads := func() int { b, _ := os.ReadFile(log); return strings.Count(string(b), "reload") }

	testpki.WriteFile(t, root, "kill-once", nil, 0o600)
	if r := n.install(files...); r.code == 0 || reloads() != 0 {
		t.Fatalf("the install should have been killed during its reload: %+v, reloads %d", r, reloads())
	}
	if r := certkeeper(t, "status", "--config", n.config); !strings.Contains(r.stdout, "reload owed: reload of generation ..gen-000001") {
		t.Fatalf("status: %+v", r)
	}
	r := certkeeper(t, "check", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stdout, "WARNING") || !strings.Contains(r.stdout, "reload owed") {
		t.Fatalf("check: %+v", r)
	}
	var sts []struct {
		Owed *struct {
			Reload, Check bool
			Generation    string
			Since         string
			Detail        string
		} `json:"owed"`
	}
	r = certkeeper(t, "status", "--config", n.config, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts) != 1 || sts[0].Owed == nil {
		t.Fatalf("status --json: %v %+v", err, r)
	}
	if o := sts[0].Owed; !o.Reload || o.Check || o.Generation != "..gen-000001" || !strings.HasPrefix(o.Detail, "reload of generation ..gen-000001") || !secondPrecision.MatchString(o.Since) {
		t.Fatalf("status --json owed: %+v", o)
	}

	r = n.install(files...)
	if r.code != 0 || !strings.Contains(r.stdout, "but its reload was owed; ran it") || reloads() != 1 {
		t.Fatalf("install again: %+v, reloads %d", r, reloads())
	}
	if r := certkeeper(t, "check", "--config", n.config); r.code != 0 {
		t.Fatalf("check after the owed reload ran: %+v", r)
	}
	if r := n.install(files...); r.code != 0 || !strings.Contains(r.stdout, "no reload") || reloads() != 1 {
		t.Fatalf("a third install: %+v, reloads %d", r, reloads())
	}
}

// A check owed alone (the kill landed during the check, after the
// reload): status and check say "check owed", never "reload owed", and
// status --json's owed says check and not reload.
func TestACheckOwedAloneIsNotCalledAReload(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "  check = [\"/bin/true\"]\n")
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	p := ca.Issue(t, "node-1", testpki.Options{})
	if r := n.install(n.files(map[string][]byte{"n.crt": p.CertPEM(), "n.key": p.KeyPEM(t), "ca.crt": ca.CertPEM()})...); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	testpki.WriteFile(t, filepath.Join(n.root, "state", "owed"), "b.json",
		[]byte(`{"generation": "..gen-000001", "since": "2026-12-01T10:00:00.123456789Z", "reload": false, "check": true}`), 0o600)
	r := certkeeper(t, "status", "--config", n.config)
	if !strings.Contains(r.stdout, "check owed: check of generation ..gen-000001") || strings.Contains(r.stdout, "reload owed") {
		t.Fatalf("status:\n%s", r.stdout)
	}
	r = certkeeper(t, "check", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stdout, "check owed") || strings.Contains(r.stdout, "reload owed") {
		t.Fatalf("check: %+v", r)
	}
	var sts []struct {
		Owed map[string]any `json:"owed"`
	}
	r = certkeeper(t, "status", "--config", n.config, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status --json: %v %+v", err, r)
	}
	if o := sts[0].Owed; o["reload"] != false || o["check"] != true || o["generation"] != "..gen-000001" {
		t.Fatalf("status --json owed: %v", o)
	}
}

// certkeeper install whose reload fails (the daemon is down, its reload
// exits 1): exit 1, saying the reload stays owed; status and check say
// "reload owed" (not OK, as before: the failure was forgotten); once the
// reload works, the same install runs it, once.
func TestAnInstallWhoseReloadFailedOwesIt(t *testing.T) {
	root := t.TempDir()
	down, log := filepath.Join(root, "daemon-down"), filepath.Join(root, "reloads")
	reload := fmt.Sprintf(`if [ -e %s ]; then echo "daemon not running" >&2; exit 1; fi; echo reload >> %s`, down, log)
	n := newNode(t, "flocker-node", "node-1", fmt.Sprintf("  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", %q]\n", reload))
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	p := ca.Issue(t, "node-1", testpki.Options{})
	files := n.files(map[string][]byte{"n.crt": p.CertPEM(), "n.key": p.KeyPEM(t), "ca.crt": ca.CertPEM()})
	reloads := func() int { b, _ := os.ReadFile(log); return strings.Count(string(b), "reload") }

	testpki.WriteFile(t, root, "daemon-down", nil, 0o600)
	if r := n.install(files...); r.code != 1 || !strings.Contains(r.stderr, "the reload stays owed (status and check say so)") {
		t.Fatalf("install with a failing reload: %+v", r)
	}
	if r := certkeeper(t, "check", "--config", n.config); r.code != 1 || !strings.Contains(r.stdout, "reload owed") {
		t.Fatalf("check after a failed reload: %+v", r)
	}
	os.Remove(down)
	if r := n.install(files...); r.code != 0 || !strings.Contains(r.stdout, "but its reload was owed; ran it") || reloads() != 1 {
		t.Fatalf("install again once the reload works: %+v, reloads %d", r, reloads())
	}
	if r := certkeeper(t, "check", "--config", n.config); r.code != 0 {
		t.Fatalf("check after the owed reload ran: %+v", r)
	}
}
