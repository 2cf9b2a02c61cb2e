//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// copyCA copies a CA directory as docs/admin-host.md §10 says: rsync under
// a shared lock on ca.db, so that no `ca` command writes the database
// while it is copied (cp -a when rsync is missing).
func copyCA(t *testing.T, from, to string) {
	t.Helper()
	args := []string{"-s", "-w", "15", filepath.Join(from, "ca.db"), "rsync", "-a", "--delete", from + "/", to + "/"}
	if _, err := exec.LookPath("rsync"); err != nil {
		args = []string{"-s", "-w", "15", filepath.Join(from, "ca.db"), "cp", "-a", "-T", from, to}
	}
	if out, err := exec.Command("flock", args...).CombinedOutput(); err != nil {
		t.Fatalf("flock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serials lists the serials a CA directory's database holds.
func serials(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, e := range list(t, dir, true) {
		out[strings.ToLower(e.Serial)] = true
	}
	return out
}

// A running agent with two real admin hosts: the first is killed
// (SIGKILL) after the agents renewed once from it; the next renewals, a
// CSR signed by the standby's copy of the CA and a pull of a certificate
// the primary re-issued, come from the second; status, status --json and
// the log say so. When the first is back, the next renewal comes from it
// again (config order at every fetch), and the log says that too.
// 15-second certificates: a renewal about every 10 s.
func TestRunningAgentFailsOverToASecondAdminHost(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 40 s with two sshd, agents and daemons; scripts/test runs it in its normal pass")
	}
	h := newAdminHost(t, "15s", "csr", "pull")
	h.start("")
	// The standby: its own sshd and host key, and its own copy of the CA
	// directory, which its forced command signs with.
	standbyCA := filepath.Join(t.TempDir(), "ca")
	copyCA(t, h.ca, standbyCA)
	r := certkeeper(t, "sshd-config", "--inventory", h.inv, "--authorized-keys", "--ca-dir", standbyCA, "--certkeeper", binary)
	if r.code != 0 || !strings.Contains(r.stdout, standbyCA) {
		t.Fatalf("sshd-config --authorized-keys for the standby: %+v", r)
	}
	second := testsshd.Start(t, testsshd.Options{AuthorizedKeys: r.stdout})
	src := regexp.MustCompile(`(?s)\[source\].*?timeout = "20s"\n`)
	for _, n := range h.nodes {
		cfg, err := os.ReadFile(n.config)
		if err != nil {
			t.Fatal(err)
		}
		block := func(addr, kh string) string {
			return fmt.Sprintf("[[source]]\naddress = %q\nuser = \"root\"\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"5s\"\n\n", addr, n.key.Path, kh)
		}
		if !src.Match(cfg) {
			t.Fatalf("no [source] in:\n%s", cfg)
		}
		two := block(h.sshd.Addr, h.sshd.KnownHosts) + block(second.Addr, second.KnownHosts)
		if err := os.WriteFile(n.config, src.ReplaceAll(cfg, []byte(two)), 0o600); err != nil {
			t.Fatal(err)
		}
		n.agent = startAgent(t, n.config)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range h.nodes {
				t.Logf("%s agent log (tail):\n%s", n.id, tail(n.agent.log(), 40))
			}
		}
	})
	stop := make(chan struct{})
	timer := h.adminTimer("40%", time.Second, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			timer()
		}
	}()
	csr := h.nodes[0]
	start := time.Now()
	// until waits for every node's state to pass ok, for at most 30 s
	// (a renewal is due every 10 s).
	until := func(what string, ok func(n *renewNode, st agent.BundleState) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			all := true
			for _, n := range h.nodes {
				if !ok(n, n.state(t)) {
					all = false
				}
			}
			if all {
				t.Logf("%5.1fs: %s", time.Since(start).Seconds(), what)
				return
			}
			if time.Now().After(deadline) {
				for _, n := range h.nodes {
					st := n.state(t)
					t.Logf("%s: %d installs, source %+v", n.id, st.Counters.Installs, st.Source)
				}
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	answered := func(st agent.BundleState) string {
		if st.Source == nil {
			return ""
		}
		return st.Source.Answered
	}
	renewedFrom := func(k uint64, addr, which string) func(*renewNode, agent.BundleState) bool {
		return func(n *renewNode, st agent.BundleState) bool {
			a := answered(st)
			return st.Counters.Installs >= k && strings.Contains(a, addr) && strings.Contains(a, which)
		}
	}

	// 1. Both up: each agent renews from the first.
	until("both agents renewed once from the first admin host", renewedFrom(1, h.sshd.Addr, "(source 1 of 2)"))
	before := map[*renewNode]uint64{}
	for _, n := range h.nodes {
		before[n] = n.state(t).Counters.Installs
	}

	// 2. The first admin host dies mid-run.
	h.sshd.Kill()
	killed := time.Now()
	until("both renewed again, from the second", func(n *renewNode, st agent.BundleState) bool {
		return renewedFrom(before[n]+1, second.Addr, "(source 2 of 2)")(n, st)
	})
	t.Logf("first renewal from the standby %.1fs after the primary was killed", time.Since(killed).Seconds())
	for _, n := range h.nodes {
		log := n.agent.log()
		if !strings.Contains(log, "source failover: another admin host answered") || !strings.Contains(log, second.Addr) || !strings.Contains(log, h.sshd.Addr) {
			t.Errorf("%s: the log does not tell of the failover:\n%s", n.id, tail(log, 20))
		}
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "source failover") {
				t.Logf("%s log: %s", n.id, l)
				break
			}
		}
		st := certkeeper(t, "status", "--config", n.config)
		if st.code != 0 || !strings.Contains(st.stdout, "answered: ") || !strings.Contains(st.stdout, second.Addr) || !strings.Contains(st.stdout, "(source 2 of 2)") {
			t.Errorf("%s: status does not say the second answered:\n%+v", n.id, st)
		}
		t.Logf("%s status:\n%s", n.id, st.stdout)
		js := certkeeper(t, "status", "--config", n.config, "--json")
		var doc []struct {
			Agent struct {
				Source struct {
					Answered string `json:"answered"`
				} `json:"source"`
			} `json:"agent"`
		}
		if err := json.Unmarshal([]byte(js.stdout), &doc); err != nil || len(doc) != 1 || !strings.Contains(doc[0].Agent.Source.Answered, "(source 2 of 2)") {
			t.Errorf("%s: status --json: %v\n%s", n.id, err, js.stdout)
		} else {
			t.Logf("%s status --json: [0].agent.source.answered = %q", n.id, doc[0].Agent.Source.Answered)
		}
	}
	// The standby's copy of the CA signed the CSR; the primary's database
	// does not know that certificate (the next copy would drop it).
	live := csr.state(t).Serial
	if s := strings.ToLower(live); !serials(t, standbyCA)[s] || serials(t, h.ca)[s] {
		t.Errorf("serial %s signed during the outage: in the standby's database %v, in the primary's %v", live, serials(t, standbyCA)[s], serials(t, h.ca)[s])
	}

	// 3. The first is back: the next renewals come from it again.
	h.sshd.Restart()
	for _, n := range h.nodes {
		before[n] = n.state(t).Counters.Installs
	}
	until("both renewed from the first again", func(n *renewNode, st agent.BundleState) bool {
		return renewedFrom(before[n]+1, h.sshd.Addr, "(source 1 of 2)")(n, st)
	})
	for _, n := range h.nodes {
		if log := n.agent.log(); !strings.Contains(log, "source failback: the first admin host answers again") {
			t.Errorf("%s: no word of the failback:\n%s", n.id, tail(log, 20))
		}
	}
	close(stop)
	if runs, fails := timer(); len(fails) > 0 {
		t.Errorf("the admin timer failed %d of %d runs: %s", len(fails), runs, strings.Join(fails, "; "))
	}
	for _, n := range h.nodes {
		n.agent.stop(t)
		st := n.state(t)
		if reloads := n.daemonReloads(); reloads != int(st.Counters.Installs) || st.Counters.ReloadFailures != 0 {
			t.Errorf("%s: %d installs but %d daemon reloads (%d failed)", n.id, st.Counters.Installs, reloads, st.Counters.ReloadFailures)
		}
		t.Logf("%s (%s): %d renewals, %d fetches, %d failed", n.id, n.mode, st.Counters.Installs, st.Counters.Fetches, st.Counters.SourceErrors)
	}
}
