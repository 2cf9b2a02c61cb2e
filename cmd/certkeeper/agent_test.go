//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testfs"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// agentProc is a running `certkeeper agent`, as the service runs it.
type agentProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exit    int
}

func startAgent(t *testing.T, config string) *agentProc {
	t.Helper()
	a := &agentProc{logPath: filepath.Join(t.TempDir(), "agent.log"), done: make(chan struct{})}
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(binary, "agent", "--config", config, "--log-format", "text")
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.cmd.Wait()
		logf.Close()
		a.exit = a.cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	waitFor(t, "the agent to be ready", func() bool {
		select {
		case <-a.done:
			t.Fatalf("agent exited %d:\n%s", a.exit, a.log())
		default:
		}
		return strings.Contains(a.log(), "ready")
	})
	return a
}

func (a *agentProc) log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

func (a *agentProc) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (a *agentProc) signal(s syscall.Signal) { a.cmd.Process.Signal(s) }

// stop sends SIGTERM and checks a clean exit and that the process is gone.
func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	a.signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("agent ignored SIGTERM for 20s:\n%s", a.log())
	}
	if a.exit != 0 {
		t.Fatalf("agent exited %d after SIGTERM:\n%s", a.exit, a.log())
	}
	if err := syscall.Kill(a.cmd.Process.Pid, 0); err == nil {
		t.Fatalf("agent pid %d still exists", a.cmd.Process.Pid)
	}
}

// waitFor polls a condition; generous, because the machine is shared. How
// fast things happen is measured by bench/agent.sh, not asserted here.
func waitFor(t *testing.T, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		if ok() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
	return 0
}

// agentNode is a node with one bundle and a reload that counts.
type agentNode struct {
	*node
	inbox, reloads string
	ca             *testpki.Pair
}

func newAgentNode(t *testing.T, extra string) *agentNode {
	t.Helper()
	reloads := filepath.Join(t.TempDir(), "reloads")
	n := newNode(t, "flocker-node", "node-1", extra+fmt.Sprintf("\n  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", \"echo reload >> %s\"]\n", reloads))
	return &agentNode{node: n, inbox: filepath.Join(n.root, "state", "inbox", "b"), reloads: reloads, ca: testpki.NewCA(t, "cluster", testpki.Options{})}
}

func (n *agentNode) reloadCount() int {
	b, _ := os.ReadFile(n.reloads)
	return strings.Count(string(b), "reload")
}

// drop writes files into the inbox one after another, as scp does: in
// place, under the admin's names.
func (n *agentNode) drop(files map[string][]byte) {
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(n.inbox, name), data, 0o600); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *agentNode) bundleFor(p *testpki.Pair, prefix string) map[string][]byte {
	return map[string][]byte{prefix + ".crt": p.CertPEM(), prefix + ".key": p.KeyPEM(n.t), "cluster-ca.pem": n.ca.CertPEM()}
}

func (n *agentNode) liveCert() []byte {
	b, _ := os.ReadFile(filepath.Join(n.live, "node.crt"))
	return b
}

func inboxFiles(dir string) []string {
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// The admin's story: a bundle dropped under odd names installs under the
// canonical names and modes with exactly one reload; a wrong bundle is
// rejected with its reason and changes nothing; the agent goes on.
func TestAgentInstallsTheInboxAndRejectsABadSet(t *testing.T) {
	n := newAgentNode(t, "")
	a := startAgent(t, n.config)
	leaf := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	n.drop(n.bundleFor(leaf, "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a"))
	took := waitFor(t, "the dropped bundle to be live", func() bool { return bytes.Equal(n.liveCert(), leaf.CertPEM()) && n.reloadCount() == 1 })
	t.Logf("live and reloaded %s after the last file was written", took.Round(time.Millisecond))
	for name, want := range map[string]os.FileMode{"node.crt": 0o644, "node.key": 0o600, "cluster.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(n.live, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %04o", name, fi, err, want)
		}
	}
	waitFor(t, "the inbox to be emptied", func() bool { return len(inboxFiles(n.inbox)) == 0 })
	time.Sleep(500 * time.Millisecond)
	if c := n.reloadCount(); c != 1 {
		t.Fatalf("%d reloads for one bundle, want 1", c)
	}

	// Another node's certificate: rejected, with its reason.
	before := testfs.Snapshot(t, n.live)
	other := n.ca.Issue(t, "node-2", testpki.Options{})
	n.drop(n.bundleFor(other, "node-2"))
	var reason string
	waitFor(t, "the bad set to be rejected", func() bool {
		m, _ := filepath.Glob(filepath.Join(n.inbox, "rejected", "*", "reason"))
		if len(m) == 1 {
			b, _ := os.ReadFile(m[0])
			reason = string(b)
		}
		return reason != "" && len(inboxFiles(n.inbox)) == 0
	})
	if !strings.Contains(reason, `certificate is for "node-2"`) {
		t.Fatalf("reason file: %s", reason)
	}
	if m, _ := filepath.Glob(filepath.Join(n.inbox, "rejected", "*", "node-2.key")); len(m) != 1 {
		t.Fatalf("rejected files not kept: %v", m)
	}
	if testfs.Snapshot(t, n.live) != before {
		t.Fatal("a rejected set changed the live directory")
	}
	if !a.alive() || n.reloadCount() != 1 {
		t.Fatalf("agent alive=%v, reloads %d", a.alive(), n.reloadCount())
	}
	if !strings.Contains(a.log(), "inbox set rejected") {
		t.Fatalf("rejection not logged:\n%s", a.log())
	}
	r := certkeeper(t, "check", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stdout, "inbox set rejected") {
		t.Fatalf("check after a rejection: %+v", r)
	}

	// A half-written set waits rather than being rejected, and installs
	// once whole.
	next := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	full := next.KeyPEM(t)
	os.WriteFile(filepath.Join(n.inbox, "new.crt"), next.CertPEM(), 0o600)
	os.WriteFile(filepath.Join(n.inbox, "new.key"), full[:len(full)/2], 0o600)
	waitFor(t, "the agent to wait for the rest", func() bool { return strings.Contains(a.log(), "ends inside a PEM block") })
	os.WriteFile(filepath.Join(n.inbox, "new.key"), full, 0o600)
	waitFor(t, "the completed set to install", func() bool { return bytes.Equal(n.liveCert(), next.CertPEM()) && n.reloadCount() == 2 })
	if r := certkeeper(t, "check", "--config", n.config); r.code != 0 {
		t.Fatalf("check after a good install: %+v", r)
	}
	a.stop(t)
}

// Drift is repaired within a second (here: a generous bound; the figure
// comes from the log timestamps), without a reload.
func TestAgentRepairsDrift(t *testing.T) {
	n := newAgentNode(t, "")
	leaf := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	if r := n.install(n.files(n.bundleFor(leaf, "x"))...); r.code != 0 {
		t.Fatal(r)
	}
	base := n.reloadCount()
	a := startAgent(t, n.config)
	key := filepath.Join(n.live, "node.key")
	mode := func(p string) os.FileMode { fi, _ := os.Stat(p); return fi.Mode().Perm() }

	os.Chmod(key, 0o644)
	took := waitFor(t, "the key's mode to be repaired", func() bool { return mode(key) == 0o600 })
	t.Logf("key mode repaired after %s", took.Round(time.Millisecond))

	os.Remove(filepath.Join(n.live, "node.crt"))
	waitFor(t, "node.crt to be restored", func() bool { return bytes.Equal(n.liveCert(), leaf.CertPEM()) })

	os.Rename(filepath.Join(n.live, "cluster.crt"), filepath.Join(n.live, "ca-old.crt"))
	waitFor(t, "a renamed cluster.crt to be restored", func() bool {
		b, _ := os.ReadFile(filepath.Join(n.live, "cluster.crt"))
		return bytes.Equal(b, n.ca.CertPEM())
	})

	// Content replaced through the link (cp other.crt node.crt).
	other := n.ca.Issue(t, "node-1", testpki.Options{})
	os.WriteFile(filepath.Join(n.live, "node.crt"), other.CertPEM(), 0o644)
	waitFor(t, "node.crt's content to be restored", func() bool { return bytes.Equal(n.liveCert(), leaf.CertPEM()) })

	if os.Geteuid() == 0 {
		os.Chown(key, 65534, 65534)
		waitFor(t, "the key's owner to be restored", func() bool {
			fi, _ := os.Stat(key)
			return fi.Sys().(*syscall.Stat_t).Uid == 0
		})
	}
	time.Sleep(300 * time.Millisecond)
	if c := n.reloadCount(); c != base {
		t.Fatalf("repairs caused %d reloads", c-base)
	}
	if !strings.Contains(a.log(), "repaired drift") {
		t.Fatalf("repairs not logged:\n%s", a.log())
	}
	// The inbox removed and created again is still watched.
	os.RemoveAll(n.inbox)
	os.MkdirAll(n.inbox, 0o700)
	time.Sleep(100 * time.Millisecond)
	os.MkdirAll(n.inbox, 0o700) // the agent may have re-created it first
	next := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	n.drop(n.bundleFor(next, "renewed"))
	waitFor(t, "a set dropped into the re-created inbox to install", func() bool { return bytes.Equal(n.liveCert(), next.CertPEM()) })

	r := certkeeper(t, "status", "--config", n.config, "--json")
	var reps []agent.Report
	if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil || len(reps) != 1 || reps[0].Agent == nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if ag := reps[0].Agent; !ag.Running || ag.Counters.Repairs < 4 || ag.Counters.Installs != 1 || ag.LastRepair == nil {
		t.Fatalf("agent state in status: %+v", ag)
	}
	a.stop(t)
	r = certkeeper(t, "status", "--config", n.config)
	if !strings.Contains(r.stdout, "agent     stopped at") && !strings.Contains(r.stdout, "stopped at") {
		t.Fatalf("status after stop:\n%s", r.stdout)
	}
}

// A real daemon serving mutual TLS: a bundle through the inbox makes it
// serve the new serial; a failing check rolls back and it serves the old
// one again.
func TestAgentReloadsARealDaemonAndRollsBackOnAFailedCheck(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	client := ca.Issue(t, "admin-client", testpki.Options{})
	first := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	failMarker := filepath.Join(t.TempDir(), "fail-check")
	n := newNode(t, "flocker-node", "node-1", "")
	// The daemon reads the bundle's live names; its pidfile is the reload
	// target.
	if r := n.install(n.files(map[string][]byte{"a": first.CertPEM(), "b": first.KeyPEM(t), "c": ca.CertPEM()})...); r.code != 0 {
		t.Fatal(r)
	}
	d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(n.live, "node.crt"), Key: filepath.Join(n.live, "node.key"), CA: filepath.Join(n.live, "cluster.crt")})
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
check = ["/bin/sh", "-c", "if [ -e %s ]; then i=0; while [ $i -lt 100 ] && ! grep -q \"serving serial=$(cat %s)\" %s; do sleep 0.05; i=$((i+1)); done; echo the new certificate breaks the service; exit 1; fi"]

  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
`, filepath.Join(n.root, "state"), n.live, failMarker, failMarker, d.LogPath, d.Pidfile)
	testpki.WriteFile(t, n.root, "certkeeper.toml", []byte(cfg), 0o600)
	serial := func() string { return d.Serial(t, client.CertPEM(), client.KeyPEM(t), ca.CertPEM()) }
	if got, want := serial(), fmt.Sprintf("%x", first.Cert.SerialNumber); got != want {
		t.Fatalf("daemon serves %s, want %s", got, want)
	}
	a := startAgent(t, n.config)
	inbox := filepath.Join(n.root, "state", "inbox", "b")

	second := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	for name, data := range map[string][]byte{"n.crt": second.CertPEM(), "n.key": second.KeyPEM(t)} {
		os.WriteFile(filepath.Join(inbox, name), data, 0o600)
	}
	want2 := fmt.Sprintf("%x", second.Cert.SerialNumber)
	waitFor(t, "the daemon to serve the new serial", func() bool { return serial() == want2 })
	// The check runs after the reload; let it pass before arming the
	// failure.
	waitFor(t, "the check to pass", func() bool { return strings.Contains(a.log(), "check passed") })

	// A check that fails: the bundle rolls back, the daemon reloads and
	// serves the second serial again. Like a real check, it first sees the
	// daemon serve the new certificate (the reload signal is asynchronous,
	// and two SIGHUPs close together may reach the daemon as one).
	third := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	os.WriteFile(failMarker, fmt.Appendf(nil, "%x", third.Cert.SerialNumber), 0o600)
	for name, data := range map[string][]byte{"t.crt": third.CertPEM(), "t.key": third.KeyPEM(t)} {
		os.WriteFile(filepath.Join(inbox, name), data, 0o600)
	}
	waitFor(t, "the rollback", func() bool { return strings.Contains(a.log(), "rolled back") })
	waitFor(t, "the daemon to serve the previous serial", func() bool { return serial() == want2 })
	if !strings.Contains(d.Log(), fmt.Sprintf("serving serial=%x", third.Cert.SerialNumber)) {
		t.Fatalf("the daemon never served the third certificate:\n%s", d.Log())
	}
	if !strings.Contains(a.log(), "the new certificate breaks the service") {
		t.Fatalf("the check's output is not logged:\n%s", a.log())
	}
	r := certkeeper(t, "check", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stdout, "check failed") {
		t.Fatalf("check after a rollback: %+v", r)
	}
	r = certkeeper(t, "status", "--config", n.config)
	for _, want := range []string{"last check", "last rollback", "rollbacks 1", "check failures 1", "..gen-000003 -> ..gen-000002"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	a.stop(t)
}

// SIGHUP re-reads the config; a bad one is logged and the running one
// kept. SIGTERM stops cleanly. Metrics are served and written.
func TestAgentSignalsAndMetrics(t *testing.T) {
	textfile := filepath.Join(t.TempDir(), "certkeeper.prom")
	n := newAgentNode(t, "")
	good, _ := os.ReadFile(n.config)
	withMetrics := strings.Replace(string(good), "[[bundle]]", fmt.Sprintf("metrics_listen = \"127.0.0.1:0\"\nmetrics_textfile = %q\n\n[[bundle]]", textfile), 1)
	os.WriteFile(n.config, []byte(withMetrics), 0o600)
	leaf := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	if r := n.install(n.files(n.bundleFor(leaf, "x"))...); r.code != 0 {
		t.Fatal(r)
	}
	a := startAgent(t, n.config)
	addr := regexp.MustCompile(`metrics=(127\.0\.0\.1:\d+)`).FindStringSubmatch(a.log())
	if addr == nil {
		t.Fatalf("no metrics address in the log:\n%s", a.log())
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`certkeeper_bundle_expiry_seconds{bundle="b"}`, `certkeeper_bundle_not_after_timestamp_seconds{bundle="b"}`,
		`certkeeper_bundle_renewal_timestamp_seconds{bundle="b"}`, `certkeeper_repairs_total{bundle="b"} 0`, "# TYPE certkeeper_reloads_total counter", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every HELP line says something: certkeeper's families have their
	// text, the process's empty ones are dropped.
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "#" && f[1] == "HELP" {
			t.Errorf("/metrics: empty HELP line %q", line)
		}
	}
	if !strings.Contains(string(body), "# HELP certkeeper_bundle_health as check judges the bundle") {
		t.Errorf("/metrics: no HELP text for certkeeper_bundle_health")
	}
	waitFor(t, "the metrics textfile", func() bool {
		b, _ := os.ReadFile(textfile)
		return strings.Contains(string(b), `certkeeper_installs_total{bundle="b"}`) && !strings.Contains(string(b), "process_")
	})

	// A bad config on SIGHUP: logged, the old one kept (it still repairs).
	os.WriteFile(n.config, []byte(withMetrics+"\nbogus_key = 1\n"), 0o600)
	a.signal(syscall.SIGHUP)
	waitFor(t, "the bad config to be refused", func() bool { return strings.Contains(a.log(), "config reload failed; keeping the running config") })
	if !strings.Contains(a.log(), "bogus_key") {
		t.Fatalf("the refusal does not name the key:\n%s", a.log())
	}
	os.Chmod(filepath.Join(n.live, "node.key"), 0o640)
	waitFor(t, "a repair under the kept config", func() bool {
		fi, _ := os.Stat(filepath.Join(n.live, "node.key"))
		return fi.Mode().Perm() == 0o600
	})
	// A good new config: a second bundle appears.
	second := filepath.Join(n.root, "live2")
	os.WriteFile(n.config, []byte(withMetrics+fmt.Sprintf("\n[[bundle]]\nname = \"c\"\nlayout = \"glow\"\nnode_id = \"localhost\"\ndir = %q\n", second)), 0o600)
	a.signal(syscall.SIGHUP)
	waitFor(t, "the new config", func() bool { return strings.Contains(a.log(), "config reloaded") })
	waitFor(t, "the new bundle's inbox", func() bool { _, err := os.Stat(filepath.Join(n.root, "state", "inbox", "c")); return err == nil })

	a.stop(t)
	if !strings.Contains(a.log(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", a.log())
	}
	st, err := agent.ReadState(&agent.Config{StateDir: filepath.Join(n.root, "state")})
	if err != nil || st == nil || st.Stopped.IsZero() || len(st.Bundles) != 2 {
		t.Fatalf("state after stop: %+v %v", st, err)
	}
}

func TestAgentUsage(t *testing.T) {
	// Without --config the agent reads $CERTKEEPER_CONFIG, else
	// /etc/certkeeper/certkeeper.toml, and says which file is missing.
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CONFIG=/nonexistent-default.toml"}, "agent"); r.code != 1 || !strings.Contains(r.stderr, "/nonexistent-default.toml") {
		t.Fatalf("agent without --config: %+v", r)
	}
	if r := certkeeper(t, "agent", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: certkeeper agent") {
		t.Fatalf("agent --help: %+v", r)
	}
	if r := certkeeper(t, "agent", "--config", "/nonexistent.toml"); r.code != 1 || !strings.Contains(r.stderr, "nonexistent") {
		t.Fatalf("agent with a missing config: %+v", r)
	}
}
