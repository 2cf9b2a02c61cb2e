//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// adminHost is the admin host as docs/renewal.md sets it up, with the
// real binaries: a CA made by `certkeeper ca`, an inventory, and a real
// sshd whose authorized_keys is what `certkeeper sshd-config
// --authorized-keys` prints: pull nodes' keys (restrict) and CSR nodes'
// keys with the forced `certkeeper ca sign --dir CA --node ID`. Pull nodes
// read the copy `certkeeper sshd-config --sync` makes of their bundle
// (files root:<account> 0440 under a root-owned path); sshd does not
// chroot them here, since every test account is root
// (distribute/chroot_linux_test.go proves the chroot itself).
type adminHost struct {
	t       *testing.T
	ca      string
	inv     string
	base    string // root-owned: chroots and keys for --sync
	sshd    *testsshd.Server
	nodes   []*renewNode
	keysDir string
}

// renewNode is one node: its SSH key, agent config, live directory, and
// the mutual-TLS daemon its agent reloads.
type renewNode struct {
	id, mode string
	key      *testsshd.Key
	root     string
	config   string
	live     string
	daemon   *daemontest.Daemon
	agent    *agentProc
}

// newAdminHost makes the CA (node certificates of lifetime, a duration
// for node_lifetime, or "" for the 90-day default) and one node per mode
// ("pull" or "csr"), each with its first bundle installed (as a push
// would) and its daemon serving it. Call start to bring up sshd.
func newAdminHost(t *testing.T, lifetime string, modes ...string) *adminHost {
	t.Helper()
	testsshd.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("the admin host's --sync hands files to root-owned paths; run as root (scripts/test does)")
	}
	h := &adminHost{t: t, ca: newCADir(t)}
	if lifetime != "" {
		f, err := os.OpenFile(filepath.Join(h.ca, "ca.toml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "node_lifetime = %q\n", lifetime)
		f.Close()
	}
	base, err := os.MkdirTemp("/srv", "certkeeper-renew-")
	if err != nil {
		t.Skipf("no root-owned place for the sync's copies: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	if err := distribute.CheckRootChain(base); err != nil {
		t.Skipf("/srv is not usable here: %v", err)
	}
	h.base, h.keysDir = base, filepath.Join(base, "keys")
	keys := t.TempDir()
	var inv strings.Builder
	inv.WriteString("# inventory\n[defaults]\nuser = \"root\"\ntarget = \"/var/lib/certkeeper/inbox/b\"\n")
	for i, mode := range modes {
		n := &renewNode{id: fmt.Sprintf("%s-%d", mode, i+1), mode: mode, root: t.TempDir()}
		n.key = testsshd.NewKey(t, keys, n.id, "ed25519")
		n.config, n.live = filepath.Join(n.root, "certkeeper.toml"), filepath.Join(n.root, "live")
		fmt.Fprintf(&inv, "\n[[node]]\nid = %q\naddress = \"127.0.0.1\"\nmode = %q\npublic_key = %q\n", n.id, mode, n.key.AuthorizedLine())
		if mode == "pull" {
			inv.WriteString("account = \"root\"\n") // the one account that exists here
		}
		mustCA(t, "issue", "--dir", h.ca, "node", n.id)
		h.nodes = append(h.nodes, n)
	}
	h.inv = testpki.WriteFile(t, keys, "nodes.toml", []byte(inv.String()), 0o600)
	h.publish()
	return h
}

// authorizedKeys is the admin host's authorized_keys, as sshd-config
// prints it.
func (h *adminHost) authorizedKeys() string {
	r := certkeeper(h.t, "sshd-config", "--inventory", h.inv, "--authorized-keys", "--ca-dir", h.ca, "--certkeeper", binary)
	if r.code != 0 {
		h.t.Fatalf("sshd-config --authorized-keys: %+v", r)
	}
	var lines []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// publish is what the shipped unit runs after each `ca renew`: the sync of
// the pull nodes' copies (and of the CA account's keys file).
func (h *adminHost) publish() result {
	return certkeeper(h.t, "sshd-config", "--inventory", h.inv, "--sync", "--ca-dir", h.ca, "--certkeeper", binary,
		"--chroot-dir", filepath.Join(h.base, "chroot"), "--keys-dir", h.keysDir)
}

// start brings up sshd, writes each node's config, installs its first
// bundle and starts its daemon.
func (h *adminHost) start(extra string) {
	t := h.t
	t.Helper()
	h.sshd = testsshd.Start(t, testsshd.Options{AuthorizedKeys: h.authorizedKeys()})
	for _, n := range h.nodes {
		remote := ""
		if n.mode == "pull" {
			remote = fmt.Sprintf("remote_dir = %q\n", filepath.Join(h.base, "chroot", n.id, "nodes", n.id))
		}
		daemonDir := t.TempDir()
		cfg := fmt.Sprintf(`node_id = %q
state_dir = %q
%s
[source]
address = %q
user = "root"
identity_file = %q
known_hosts = %q
timeout = "20s"

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
mode = %q
%s
  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
  only_if_running = true
`, n.id, filepath.Join(n.root, "state"), extra, h.sshd.Addr, n.key.Path, h.sshd.KnownHosts, n.live, n.mode, remote, filepath.Join(daemonDir, "testdaemon.pid"))
		testpki.WriteFile(t, n.root, "certkeeper.toml", []byte(cfg), 0o600)
		pub := filepath.Join(h.ca, "nodes", n.id)
		if r := certkeeper(t, "install", "--config", n.config, filepath.Join(pub, "node.crt"), filepath.Join(pub, "node.key"), filepath.Join(pub, "cluster.crt")); r.code != 0 {
			t.Fatalf("first install of %s: %+v", n.id, r)
		}
		n.daemon = daemontest.Start(t, daemontest.Options{Dir: daemonDir, Cert: filepath.Join(n.live, "node.crt"), Key: filepath.Join(n.live, "node.key"), CA: filepath.Join(n.live, "cluster.crt")})
	}
}

// state is the node's agent state, as status --json merges it.
func (n *renewNode) state(t *testing.T) agent.BundleState {
	t.Helper()
	st, err := agent.ReadState(&agent.Config{StateDir: filepath.Join(n.root, "state")})
	if err != nil || st == nil || len(st.Bundles) == 0 {
		return agent.BundleState{}
	}
	return st.Bundles[0]
}

// daemonReloads counts the reloads the daemon itself did.
func (n *renewNode) daemonReloads() int { return strings.Count(n.daemon.Log(), "reloaded: serving") }

// rssKiB reads a process's resident set from /proc.
func rssKiB(pid int) int { return procStatus(pid, "VmRSS") }

// procStatus reads one "Name:  N kB" field of /proc/PID/status (VmRSS,
// RssAnon, RssFile), -1 when missing.
func procStatus(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

// certkeeper renew, with the real sshd: not due is a no-op that asks
// nobody; --force renews in the bundle's mode (a CSR through the forced
// command; a pull that finds nothing newer fails and says so); failures
// name the host and the reason.
func TestRenewCommandOverSSH(t *testing.T) {
	h := newAdminHost(t, "", "csr", "pull")
	h.start("")
	csr, pull := h.nodes[0], h.nodes[1]
	signed := func() int {
		n := 0
		for _, e := range list(t, h.ca, true) {
			if e.Source == "csr" {
				n++
			}
		}
		return n
	}

	r := certkeeper(t, "renew", "--config", csr.config)
	if r.code != 0 || !strings.Contains(r.stdout, "b: not due: the renewal window opens") || signed() != 0 {
		t.Fatalf("renew, not due: %+v (%d signed)", r, signed())
	}
	before, _ := os.ReadFile(filepath.Join(csr.live, "node.key"))
	r = certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "b: renewed by csr from ssh://root@"+h.sshd.Addr+" (ca sign): generation ..gen-000002") || !strings.Contains(r.stdout, "reload signal HUP") || signed() != 1 {
		t.Fatalf("renew --force by CSR: %+v (%d signed)", r, signed())
	}
	after, _ := os.ReadFile(filepath.Join(csr.live, "node.key"))
	if string(before) == string(after) {
		t.Fatal("the key did not change")
	}
	if _, err := os.Stat(filepath.Join(csr.root, "state", "csr", "b.key")); !os.IsNotExist(err) {
		t.Fatalf("the pending key outlived the install: %v", err)
	}
	waitFor(t, "the daemon to reload", func() bool { return csr.daemonReloads() == 1 })
	// The CA now leaves the node to its agent.
	if r := mustCA(t, "renew", "--dir", h.ca, "--within", "100d", "--dry-run"); !strings.Contains(r.stdout, "skipped csr-1: its key lives on the node") {
		t.Fatalf("ca renew after a CSR: %s", r.stdout)
	}

	// Pull: the admin host has not re-issued, so there is nothing newer.
	r = certkeeper(t, "renew", "--config", pull.config, "--force")
	if r.code != 1 || !strings.Contains(r.stderr, "nothing newer") || !strings.Contains(r.stderr, h.sshd.Addr) {
		t.Fatalf("renew --force, nothing newer: %+v", r)
	}
	mustCA(t, "renew", "--dir", h.ca, "--within", "100d")
	if r := h.publish(); r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	if r := certkeeper(t, "renew", "--config", pull.config, "--force"); r.code != 0 || !strings.Contains(r.stdout, "b: renewed by pull from sftp://root@") {
		t.Fatalf("renew --force by pull: %+v", r)
	}

	// Refused by the CA: the reason comes back, with the host.
	mustCA(t, "revoke", "--dir", h.ca, "csr-1")
	r = certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 1 || !strings.Contains(r.stderr, h.sshd.Addr+": the CA refused the certificate request (exit 1)") || !strings.Contains(r.stderr, "was revoked") {
		t.Fatalf("renew of a revoked node: %+v", r)
	}
	// The admin host down.
	h.sshd.Stop()
	r = certkeeper(t, "renew", "--config", csr.config, "--force")
	if r.code != 1 || !strings.Contains(r.stderr, h.sshd.Addr) || !strings.Contains(r.stderr, "connection refused") {
		t.Fatalf("renew with sshd down: %+v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(csr.live, "node.key")); string(got) != string(after) {
		t.Fatal("a failed renewal changed the live key")
	}
	if r := certkeeper(t, "renew", "--config", csr.config, "--bundle", "nope"); r.code != 2 {
		t.Fatalf("unknown bundle: %+v", r)
	}
	if r := certkeeper(t, "renew", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Fatalf("help: %+v", r)
	}
}

// `sshd-config --sync` follows the inventory down as well as up: the last
// CSR node taken out loses its forced `ca sign` line, and a pull node taken
// out leaves its chroot and keys file, which the sync names with the
// command that removes them.
func TestSSHDConfigSyncForgetsNodesLeavingTheInventory(t *testing.T) {
	h := newAdminHost(t, "", "pull", "csr")
	if r := h.publish(); r.code != 0 || r.stderr != "" {
		t.Fatalf("first sync: %+v", r)
	}
	caKeys := filepath.Join(h.keysDir, "certkeeper-ca")
	if data, _ := os.ReadFile(caKeys); !strings.Contains(string(data), "--node csr-2") {
		t.Fatalf("csr-2 has no forced command:\n%s", data)
	}
	inv, _ := os.ReadFile(h.inv)
	pull, csr, _ := strings.Cut(string(inv), "\n[[node]]\nid = \"csr-2\"")
	csr = "[defaults]\nuser = \"root\"\ntarget = \"/var/lib/certkeeper/inbox/b\"\n\n[[node]]\nid = \"csr-2\"" + csr

	// The CSR node leaves the inventory.
	testpki.WriteFile(t, filepath.Dir(h.inv), "nodes.toml", []byte(pull), 0o600)
	r := h.publish()
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, caKeys+": 0 node(s) in CSR mode may run ca sign (updated)") {
		t.Fatalf("sync without CSR nodes: %+v", r)
	}
	if data, _ := os.ReadFile(caKeys); strings.Contains(string(data), "ca sign --dir") || !strings.HasPrefix(string(data), "# certkeeper: nodes in CSR mode") {
		t.Fatalf("csr-2 can still have certificates signed:\n%s", data)
	}

	// The pull node leaves; its chroot and keys file are named.
	testpki.WriteFile(t, filepath.Dir(h.inv), "nodes.toml", []byte(csr), 0o600)
	r = h.publish()
	chroot, keys := filepath.Join(h.base, "chroot", "pull-1"), filepath.Join(h.keysDir, "root")
	for _, want := range []string{
		"certkeeper sshd-config: warning: " + keys + ": no node of the inventory pulls through it",
		"Remove it: rm -rf -- " + keys + "\n",
		"certkeeper sshd-config: warning: " + chroot + ": ",
		"Remove it: rm -rf -- " + chroot + "\n",
	} {
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("lacks %q: %+v", want, r)
		}
	}
	if _, err := os.Stat(chroot); err != nil {
		t.Errorf("the sync removed what it can not be sure it made: %v", err)
	}
	if data, _ := os.ReadFile(caKeys); !strings.Contains(string(data), "--node csr-2") {
		t.Fatalf("csr-2 is back, yet has no forced command:\n%s", data)
	}
}
