//go:build linux

package main

// Issue 15's revocation proof with real parts: `certkeeper ca revoke`,
// then one real push (certkeeper push over a real sshd per node), or one
// scheduled pull of a real agent over SFTP, and every node's live
// directory holds a CRL listing the revoked node; nginx with ssl_crl on a
// node then refuses the revoked node in a real handshake while the others
// still get in.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// liveCRLLists reports whether the CRL in a live directory lists serial
// (hex, as ca.serial gives it).
func liveCRLLists(live, serial string) bool {
	data, err := os.ReadFile(filepath.Join(live, "cluster.crl"))
	if err != nil {
		return false
	}
	crl, err := pki.ParseCRL(data)
	if err != nil {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if serialHex(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// mtlsGet makes one request to an nginx requiring client certificates,
// as node id (its published certificate and key), on a new connection.
func mtlsGet(ca *clusterCA, id, addr string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.tlsConfig(id), DisableKeepAlives: true}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, nil
}

// Three nodes, each a real agent behind its own real sshd; the admin host
// pushes with `certkeeper push` into their inboxes. After `ca revoke bad`
// one push brings the new CRL into all three live directories (one reload
// each, the certificates unchanged), nginx on "web" refuses bad's client
// certificate while good still gets in, and bad's own check is CRITICAL.
func TestRevocationReachesEveryNodeInOnePush(t *testing.T) {
	nginx := needDaemon(t, "/usr/sbin/nginx", "nginx")
	testsshd.Require(t)
	ca := newClusterCA(t)
	ids := []string{"web", "good", "bad"}
	ca.issue(ids...)
	mustCA(t, "crl", "--dir", ca.dir)
	client := testsshd.NewKey(t, t.TempDir(), "admin", "ed25519")
	nginxDir := t.TempDir()
	var inv strings.Builder
	fmt.Fprintf(&inv, "[defaults]\nidentity_file = %q\n", client.Path)
	members := map[string]*member{}
	for _, id := range ids {
		extra := "crl_file = \"cluster.crl\"\n"
		if id == "web" {
			extra += fmt.Sprintf("\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n  only_if_running = true\n", filepath.Join(nginxDir, "nginx.pid"))
		}
		m := newMember(t, id, extra)
		members[id] = m
		s := testsshd.Start(t, testsshd.Options{Client: client})
		fmt.Fprintf(&inv, "\n[[node]]\nid = %q\naddress = %q\nuser = %q\nknown_hosts = %q\ntarget = %q\n", id, s.Addr, s.User, s.KnownHosts, m.inbox)
	}
	invPath := testpki.WriteFile(t, t.TempDir(), "nodes.toml", []byte(inv.String()), 0o600)
	push := func() {
		t.Helper()
		if r := certkeeper(t, "push", "--inventory", invPath, "--ca-dir", ca.dir); r.code != 0 || !strings.Contains(r.stdout, "cluster.crl") {
			t.Fatalf("push: %+v", r)
		}
	}
	crlPublished := func(id string) []byte { b, _ := os.ReadFile(ca.path(id, "cluster.crl")); return b }
	liveCRL := func(m *member) []byte { b, _ := os.ReadFile(filepath.Join(m.live, "cluster.crl")); return b }
	push()
	for _, id := range ids {
		m := members[id]
		m.waitLive(ca.serial(id))
		waitFor(t, id+"'s first CRL", func() bool { return bytes.Equal(liveCRL(m), crlPublished(id)) })
	}

	web := members["web"]
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(nginxDir, "nginx.conf")
	cfgText := strings.Replace(nginxConfig(nginxDir, web.live, port), "ssl_verify_client on;",
		fmt.Sprintf("ssl_verify_client on;\n\t\tssl_crl %s/cluster.crl;", web.live), 1)
	testpki.WriteFile(t, nginxDir, "nginx.conf", []byte(cfgText), 0o644)
	d := startDaemon(t, "nginx", nginxDir, nginx, "-p", nginxDir, "-c", conf, "-e", filepath.Join(nginxDir, "error.log"))
	waitPort(t, addr, d)
	waitFor(t, "good and bad both served before the revocation", func() bool {
		g, _ := mtlsGet(ca, "good", addr)
		b, _ := mtlsGet(ca, "bad", addr)
		return g == 200 && b == 200
	})

	badSerial := ca.serial("bad")
	serials := map[string]string{}
	for _, id := range ids {
		serials[id] = ca.serial(id)
	}
	installs := func(m *member) int { return strings.Count(m.agent.log(), "msg=installed") }
	before := map[string]int{}
	for _, id := range ids {
		before[id] = installs(members[id])
	}
	reloads := func() int { return countIn(filepath.Join(nginxDir, "error.log"), "(SIGHUP) received") }
	reloadsBefore := reloads()
	mustCA(t, "revoke", "--dir", ca.dir, "bad", "--reason", "keyCompromise")
	start := time.Now()
	push() // one push
	for _, id := range ids {
		m := members[id]
		waitFor(t, id+"'s live CRL to list bad", func() bool { return liveCRLLists(m.live, badSerial) })
	}
	took := time.Since(start)
	waitFor(t, "nginx's reload for the new CRL", func() bool { return reloads() > reloadsBefore })
	// nginx answers a client whose certificate fails verification (here:
	// listed in the CRL) with 400. After the reload its old worker goes on
	// accepting with the old config until it has exited; from then on the
	// revoked node is refused, every time, and the good one served.
	waitFor(t, "nginx's old worker to exit after the reload", func() bool {
		return countIn(filepath.Join(nginxDir, "error.log"), "exited with code") > 0
	})
	for i := range 10 {
		b, berr := mtlsGet(ca, "bad", addr)
		g, gerr := mtlsGet(ca, "good", addr)
		if b != 400 || g != 200 {
			t.Fatalf("round %d after the reload: bad %d (%v), good %d (%v)\n%s", i, b, berr, g, gerr, mustRead(t, filepath.Join(nginxDir, "error.log")))
		}
	}
	if n := reloads() - reloadsBefore; n != 1 {
		t.Errorf("the new CRL reloaded nginx %d times, want 1", n)
	}
	for _, id := range ids {
		m := members[id]
		if n := installs(m) - before[id]; n != 1 {
			t.Errorf("%s: %d installs for the new CRL, want 1:\n%s", id, n, m.agent.log())
		}
		m.waitLive(serials[id]) // the certificate itself did not change
	}
	// The revoked node knows.
	r := certkeeper(t, "check", "--config", members["bad"].config)
	if r.code != 2 || !strings.HasPrefix(r.stdout, "CERTKEEPER CRITICAL - bundle b: ") || !strings.Contains(r.stdout, "this node's certificate was revoked on ") ||
		!strings.Contains(r.stdout, "(keyCompromise)") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Errorf("check on the revoked node: %+v", r)
	}
	if r := certkeeper(t, "check", "--config", members["good"].config); r.code != 0 {
		t.Errorf("check on a good node: %+v", r)
	}
	t.Logf("ca revoke, then one push: the CRL listing bad live on 3 nodes %s after the push began; nginx reloaded once and refuses bad", took.Round(time.Millisecond))
	if !d.alive() {
		t.Fatalf("nginx died:\n%s", d.output())
	}
}

// offsetClock is real time moved forward on demand: the in-process agent's
// clock, so a test can bring its next scheduled pull (an hour away) now.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time        { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) add(d time.Duration)   { c.off.Add(int64(d)) }
func (c *offsetClock) offset() time.Duration { return time.Duration(c.off.Load()) }

// lockedBuffer is a log shared by an in-process agent and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runAgentInProcess runs agent.Run, the daemon `certkeeper agent` runs,
// with the configured sources (real SFTP), on clk; stop ends it.
func runAgentInProcess(t *testing.T, config string, clk *offsetClock) (log *lockedBuffer, stop func()) {
	t.Helper()
	return runAgentWith(t, config, clk, agent.ConfiguredSource)
}

// runAgentWith is runAgentInProcess with the bundles' sources made by
// sourceFor.
func runAgentWith(t *testing.T, config string, clk *offsetClock, sourceFor func(*agent.Config, *agent.Bundle) agent.Source) (log *lockedBuffer, stop func()) {
	t.Helper()
	log = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{}, 1)
	go func() {
		done <- agent.Run(ctx, config, agent.Options{
			Logger: slog.New(slog.NewTextHandler(log, nil)), Now: clk.now, Rand: func() float64 { return 0 }, SourceFor: sourceFor,
			Hangup: make(chan struct{}),
			Notify: func(s string) {
				if s == "READY=1" {
					select {
					case ready <- struct{}{}:
					default:
					}
				}
			},
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent %s ended: %v\n%s", config, err, log)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("agent %s not ready in 60s:\n%s", config, log)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent %s: %v", config, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("agent %s did not stop in 30s", config)
			}
		})
	}
	t.Cleanup(stop)
	return log, stop
}

// pullMember is a node in pull mode: an in-process agent pulling its
// bundle over SFTP from the admin host's real sshd, and a testdaemon
// serving its live files, reloaded by SIGHUP.
type pullMember struct {
	id, root, config, live string
	daemon                 *daemontest.Daemon
	log                    *lockedBuffer
}

func (m *pullMember) reloads() int  { return strings.Count(m.daemon.Log(), "reloaded: serving") }
func (m *pullMember) installs() int { return strings.Count(m.log.String(), "msg=installed") }
func (m *pullMember) serial(t *testing.T) string {
	return certSerial(t, mustRead(t, filepath.Join(m.live, "node.crt")))
}

// Pull nodes: nothing is pushed. The agent's pull is scheduled every
// [source] pull_interval (1 h) whether or not the renewal window is open,
// and a CRL alone is a change; so after `ca revoke`, the next scheduled
// pull of each agent, over SFTP from a real sshd, brings the CRL listing
// the revoked node, installs it with one reload of the node's daemon, and
// leaves the certificate as it was. (The nodes read the CA's publish
// directories directly here; behind `sshd-config` chroots, the sync that
// the shipped timer runs after `ca renew`, or a run by hand, copies the
// CRL there first: docs/ca.md.)
func TestRevocationReachesPullNodesInOneScheduledPull(t *testing.T) {
	testsshd.Require(t)
	ca := newClusterCA(t)
	ids := []string{"pull-1", "pull-2", "pull-3"}
	ca.issue(ids...)
	mustCA(t, "crl", "--dir", ca.dir)
	s := testsshd.Start(t, testsshd.Options{})
	clk := &offsetClock{}
	var nodes []*pullMember
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("%s's agent:\n%s", n.id, n.log)
			}
		}
	})
	for _, id := range ids {
		root := t.TempDir()
		m := &pullMember{id: id, root: root, config: filepath.Join(root, "certkeeper.toml"), live: filepath.Join(root, "live")}
		daemonDir := t.TempDir()
		cfg := fmt.Sprintf(`node_id = %q
state_dir = %q
rescan_interval = "1s"

[source]
address = %q
user = %q
identity_file = %q
known_hosts = %q
timeout = "20s"

[[bundle]]
name = "b"
layout = "flocker-node"
crl_file = "cluster.crl"
dir = %q
remote_dir = %q

  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
  only_if_running = true
`, id, filepath.Join(root, "state"), s.Addr, s.User, s.Client.Path, s.KnownHosts, m.live, ca.path(id, ""), filepath.Join(daemonDir, "testdaemon.pid"))
		testpki.WriteFile(t, root, "certkeeper.toml", []byte(cfg), 0o600)
		// Nothing installed: the agent pulls its first bundle at once.
		m.log, _ = runAgentInProcess(t, m.config, clk)
		waitFor(t, id+"'s first bundle and CRL", func() bool {
			_, err := os.Stat(filepath.Join(m.live, "cluster.crl"))
			return err == nil
		})
		m.daemon = daemontest.Start(t, daemontest.Options{Dir: daemonDir, Cert: filepath.Join(m.live, "node.crt"), Key: filepath.Join(m.live, "node.key"), CA: filepath.Join(m.live, "cluster.crt")})
		nodes = append(nodes, m)
	}
	victim := nodes[2]
	victimSerial := ca.serial(victim.id)
	serials, reloads, installs := map[string]string{}, map[string]int{}, map[string]int{}
	for _, n := range nodes {
		serials[n.id], reloads[n.id], installs[n.id] = n.serial(t), n.reloads(), n.installs()
	}

	mustCA(t, "revoke", "--dir", ca.dir, victim.id)
	// Before its pull is due, nothing comes (a few rescans).
	time.Sleep(2500 * time.Millisecond)
	for _, n := range nodes {
		if liveCRLLists(n.live, victimSerial) {
			t.Fatalf("%s took the CRL before its pull was due", n.id)
		}
	}
	// An hour and a bit later (pull_interval, +10%% at most): the pull.
	clk.add(67 * time.Minute)
	for _, n := range nodes {
		waitFor(t, n.id+"'s live CRL to list "+victim.id+" after one scheduled pull", func() bool { return liveCRLLists(n.live, victimSerial) })
	}
	for _, n := range nodes {
		waitFor(t, n.id+"'s reload for the CRL", func() bool { return n.reloads() >= reloads[n.id]+1 })
		if got := n.installs() - installs[n.id]; got != 1 {
			t.Errorf("%s: %d installs after the revocation, want 1", n.id, got)
		}
		if got := n.reloads() - reloads[n.id]; got != 1 {
			t.Errorf("%s: %d reloads after the revocation, want 1", n.id, got)
		}
		if got := n.serial(t); got != serials[n.id] {
			t.Errorf("%s: the certificate changed (%s -> %s) with the CRL", n.id, serials[n.id], got)
		}
	}
	t.Logf("ca revoke, then one scheduled pull (clock moved %s): the CRL listing %s live on %d pull nodes, one reload each",
		clk.offset(), victim.id, len(nodes))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A CSR-mode node with a pull account (docs/node.md, "pull+csr") reads its
// published files between renewals every pull_interval, as a pull node
// does: after `ca revoke` of another node, its next scheduled pull (over
// SFTP from a real sshd, well outside its renewal window) installs the
// CRL listing it, with no certificate request and the certificate as it
// was.
func TestRevocationReachesACSRNodeWithAPullAccount(t *testing.T) {
	testsshd.Require(t)
	ca := newClusterCA(t)
	ca.issue("csr-1", "gone")
	mustCA(t, "crl", "--dir", ca.dir)
	s := testsshd.Start(t, testsshd.Options{})
	root := t.TempDir()
	live := filepath.Join(root, "live")
	cfg := fmt.Sprintf(`node_id = "csr-1"
state_dir = %q
rescan_interval = "1s"

[source]
address = %q
user = %q
identity_file = %q
known_hosts = %q
timeout = "20s"

[[bundle]]
name = "b"
layout = "flocker-node"
crl_file = "cluster.crl"
mode = "csr"
dir = %q
remote_dir = %q
`, filepath.Join(root, "state"), s.Addr, s.User, s.Client.Path, s.KnownHosts, live, ca.path("csr-1", ""))
	config := testpki.WriteFile(t, root, "certkeeper.toml", []byte(cfg), 0o600)
	// One test account here: the CSR source's pull account is the same
	// sshd and user ([source] csr_user would name the CA account).
	sourceFor := func(c *agent.Config, b *agent.Bundle) agent.Source {
		csr, ok := agent.ConfiguredSource(c, b).(*agent.CSRSource)
		if !ok {
			t.Errorf("bundle %s: not a CSR source", b.Name)
			return nil
		}
		pb := *b
		pb.Mode = agent.ModePull
		csr.Pull, _ = agent.ConfiguredSource(c, &pb).(*agent.SFTPSource)
		return csr
	}
	clk := &offsetClock{}
	log, _ := runAgentWith(t, config, clk, sourceFor)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent:\n%s", log)
		}
	})
	waitFor(t, "the first bundle and CRL, pulled", func() bool {
		_, err := os.Stat(filepath.Join(live, "cluster.crl"))
		return err == nil
	})
	serial := certSerial(t, mustRead(t, filepath.Join(live, "node.crt")))
	gone := ca.serial("gone")
	mustCA(t, "revoke", "--dir", ca.dir, "gone")
	time.Sleep(2500 * time.Millisecond) // a few rescans: no pull is due yet
	if liveCRLLists(live, gone) {
		t.Fatal("the CRL came before the pull was due")
	}
	clk.add(67 * time.Minute)
	waitFor(t, "the CRL listing gone after one scheduled pull", func() bool { return liveCRLLists(live, gone) })
	if got := certSerial(t, mustRead(t, filepath.Join(live, "node.crt"))); got != serial {
		t.Errorf("the certificate changed (%s -> %s)", serial, got)
	}
	for _, e := range list(t, ca.dir, true) {
		if e.Source == "csr" {
			t.Errorf("a certificate request was made: %+v", e)
		}
	}
	if n := strings.Count(log.String(), "msg=installed"); n != 2 {
		t.Errorf("%d installs, want 2 (the first bundle, the CRL)", n)
	}
	if !strings.Contains(log.String(), `source="pull: sftp://`) {
		t.Errorf("the CRL install does not name the pull account")
	}
}
