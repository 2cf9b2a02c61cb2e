//go:build linux

package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// The crash helpers are this test binary run again: CERTKEEPER_CRASH_AGENT
// runs the agent on a config until it is killed; CERTKEEPER_SIGN_HELPER is
// the admin host's `ca sign` behind a real sshd's forced command (it signs
// the request on its standard input with the CA in that directory).
func TestMain(m *testing.M) {
	if cfg := os.Getenv("CERTKEEPER_CRASH_AGENT"); cfg != "" {
		crashAgent(cfg)
		return
	}
	if dir := os.Getenv("CERTKEEPER_SIGN_HELPER"); dir != "" {
		signHelper(dir)
		return
	}
	os.Exit(m.Run())
}

func crashAgent(path string) {
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		fmt.Println("config:", err)
		os.Exit(1)
	}
	// No schedule carried over: each start fetches at once (jitter 0).
	_ = os.Remove(agent.StatePath(cfg))
	skew := time.Duration(0)
	if s := os.Getenv("CERTKEEPER_CRASH_SKEW"); s != "" {
		skew, _ = time.ParseDuration(s)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = agent.Run(ctx, path, agent.Options{
		LogOutput: os.Stdout,
		Now:       func() time.Time { return time.Now().Add(skew) },
		Rand:      func() float64 { return 0 },
		SourceFor: agent.ConfiguredSource,
	})
	if err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
}

func signHelper(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "sign helper:", err)
		os.Exit(1)
	}
	data, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	if err != nil {
		fail(err)
	}
	req, err := pki.ParseCSR(data)
	if err != nil {
		fail(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	c, err := pki.Parse(append(caPEM, keyPEM...))
	if err != nil || len(c.Certificates) != 1 || len(c.Keys) != 1 {
		fail(fmt.Errorf("the CA in %s: %v", dir, err))
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "node-1"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Certificates[0], req.PublicKey, c.Keys[0].Signer)
	if err != nil {
		fail(err)
	}
	cert, _ := x509.ParseCertificate(der)
	os.Stdout.Write(testpki.CertPEM(cert))
}

// crashNode is a node whose reload command writes down, for each run,
// the generation it reloaded, and whose check fails while bad.crt holds
// the live certificate.
type crashNode struct {
	t                         *testing.T
	root, config, live, inbox string
	reloads, bad              string
	ca                        *testpki.Pair
	proc                      *exec.Cmd
	out                       *bytes.Buffer
}

func newCrashNode(t *testing.T, mode, source string) *crashNode {
	root := t.TempDir()
	n := &crashNode{t: t, root: root, config: filepath.Join(root, "c.toml"), live: filepath.Join(root, "live"),
		inbox: filepath.Join(root, "state", "inbox", "b"), reloads: filepath.Join(root, "reloads"), bad: filepath.Join(root, "bad.crt")}
	reload := fmt.Sprintf(`g=$(readlink %s/..data); echo "start $g" >> %s; sleep 0.02; echo "done $g" >> %s`, n.live, n.reloads, n.reloads)
	check := fmt.Sprintf(`sleep 0.01; ! cmp -s %s/node.crt %s`, n.live, n.bad)
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q
rescan_interval = "1s"
%s
[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
debounce = "20ms"
mode = %q
check = ["/bin/sh", "-c", %q]
  [[bundle.reload]]
  command = ["/bin/sh", "-c", %q]
`, filepath.Join(root, "state"), source, n.live, mode, check, reload)
	testpki.WriteFile(t, root, "c.toml", []byte(cfg), 0o600)
	return n
}

// start runs the agent in a session of its own, as systemd does, and
// waits until it is ready.
func (n *crashNode) start(extraEnv ...string) {
	n.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), "CERTKEEPER_CRASH_AGENT="+n.config), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	pw.Close()
	n.proc, n.out = cmd, &bytes.Buffer{}
	ready := make(chan bool, 1)
	out := n.out
	go func() {
		sc := bufio.NewScanner(pr)
		said := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !said && strings.Contains(sc.Text(), "ready") {
				said = true
				ready <- true
			}
		}
		pr.Close()
		if !said {
			ready <- false
		}
	}()
	n.t.Cleanup(func() { n.kill(true) })
	select {
	case ok := <-ready:
		if !ok {
			n.t.Fatalf("the agent exited before it was ready")
		}
	case <-time.After(20 * time.Second):
		n.t.Fatal("the agent was not ready within 20 s")
	}
}

// kill sends SIGKILL to the agent's pid, or to its whole process group
// (its reload and check too, as KillMode=control-group does), and reaps it.
func (n *crashNode) kill(group bool) {
	if n.proc == nil {
		return
	}
	pid := n.proc.Process.Pid
	if group {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = n.proc.Wait()
	n.proc = nil
	// A reload left behind by a pid-only kill finishes on its own; wait
	// for the group to be gone so that counts are final.
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(2 * time.Millisecond) {
		if !groupRuns(pid) {
			return
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// groupRuns reports whether a process of group pgid still runs: zombies
// (orphans that init has not reaped yet) write nothing and do not count.
func groupRuns(pgid int) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == fmt.Sprint(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func (n *crashNode) liveGen() string {
	g, _ := os.Readlink(filepath.Join(n.live, "..data"))
	return g
}

// reloadLines is the reload command's record from offset on.
func (n *crashNode) reloadLines(offset int) (lines []string, end int) {
	b, _ := os.ReadFile(n.reloads)
	if offset > len(b) {
		offset = len(b)
	}
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines, len(b)
}

func (n *crashNode) owed() bool {
	_, err := os.Stat(filepath.Join(n.root, "state", "owed", "b.json"))
	return err == nil
}

func (n *crashNode) fetches() uint64 {
	b, _ := os.ReadFile(filepath.Join(n.root, "state", agent.StateFileName))
	st, err := agent.ParseState(b)
	if err != nil || len(st.Bundles) == 0 {
		return 0
	}
	return st.Bundles[0].Counters.Fetches
}

// crashFigures are what a crash run counts.
type crashFigures struct {
	kills, groupKills, changes, reloads, skipped, doubles, extra int
}

// settle waits until what the restarted agent owes is paid (and what
// more it must have done, done), then judges the round: the live
// generation changed (or a rollback happened) and was reloaded, once or
// twice; or nothing changed and nothing was reloaded. The live pair must
// match.
func (n *crashNode) settle(f *crashFigures, prevGen string, offset int, done func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		g := n.liveGen()
		lines, _ := n.reloadLines(offset)
		reloaded := strings.Contains(strings.Join(lines, "\n")+"\n", "done "+g+"\n")
		if !n.owed() && (done == nil || done()) && (g == prevGen || reloaded) {
			break
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the restarted agent did not settle: live %s (was %s), owed %v, reloads since the kill %q\n%s", g, prevGen, n.owed(), lines, n.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(n.live, "node.crt"), filepath.Join(n.live, "node.key")); err != nil {
		n.t.Fatalf("torn pair after the restart: %v", err)
	}
	g := n.liveGen()
	lines, _ := n.reloadLines(offset)
	doneOf := map[string]int{}
	for _, l := range lines {
		if gen, ok := strings.CutPrefix(l, "done "); ok {
			doneOf[gen]++
			f.reloads++
		}
	}
	changed := g != prevGen || len(doneOf) > 1 || (len(doneOf) == 1 && doneOf[g] == 0)
	switch {
	case changed && doneOf[g] == 0:
		f.skipped++
		n.t.Errorf("generation %s became live (was %s) and was never reloaded; reloads %q", g, prevGen, lines)
	case !changed && doneOf[g] > 0:
		f.extra++
		n.t.Errorf("nothing changed (%s) and yet it was reloaded %d times", g, doneOf[g])
	}
	if changed {
		f.changes++
	}
	for gen, c := range doneOf {
		if c > 2 {
			n.t.Errorf("generation %s reloaded %d times after one change", gen, c)
		}
		if c == 2 {
			f.doubles++
		}
	}
}

func crashRounds(t *testing.T, normal int) int {
	if testing.Short() {
		return normal / 5
	}
	return normal
}

func (f crashFigures) log(t *testing.T, what string) {
	t.Logf("%s: %d SIGKILLs (%d of the process group), %d changes, %d reloads counted, %d skipped, %d reloaded twice, %d reloads without a change",
		what, f.kills, f.groupKills, f.changes, f.reloads, f.skipped, f.doubles, f.extra)
}

// Deliveries through the inbox, the agent killed at a random instant
// after each drop: around the install, the reload, the check and, for
// every fourth bundle (its check fails), the rollback.
func TestCrashInboxDeliveriesAreAllReloaded(t *testing.T) {
	n := newCrashNode(t, "pull", "")
	n.ca = testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(48 * time.Hour)})
	first := n.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)})
	inputs := []agentInput{{"a.crt", first.CertPEM()}, {"a.key", first.KeyPEM(t)}, {"ca.crt", n.ca.CertPEM()}}
	n.drop(inputs)
	n.start()
	n.settle(&crashFigures{}, "", 0, func() bool { return len(inboxNames(n.inbox)) == 0 })
	var f crashFigures
	rounds := crashRounds(t, 110)
	for i := 0; i < rounds; i++ {
		p := n.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour + time.Duration(i+1)*time.Second)})
		if i%4 == 3 {
			testpki.WriteFile(t, n.root, "bad.crt", p.CertPEM(), 0o644)
		}
		prev := n.liveGen()
		_, offset := n.reloadLines(0)
		n.drop([]agentInput{{fmt.Sprintf("n%d.crt", i), p.CertPEM()}, {fmt.Sprintf("n%d.key", i), p.KeyPEM(t)}})
		time.Sleep(time.Duration(mrand.IntN(120)) * time.Millisecond)
		group := i%2 == 0
		n.kill(group)
		f.kills++
		if group {
			f.groupKills++
		}
		n.start()
		n.settle(&f, prev, offset, func() bool { return len(inboxNames(n.inbox)) == 0 })
	}
	n.kill(true)
	f.log(t, "inbox")
}

type agentInput struct {
	name string
	data []byte
}

func (n *crashNode) drop(in []agentInput) {
	if err := os.MkdirAll(n.inbox, 0o700); err != nil {
		n.t.Fatal(err)
	}
	for _, x := range in {
		testpki.WriteFile(n.t, n.inbox, x.name, x.data, 0o600)
	}
}

func inboxNames(dir string) []string {
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// Pulls from a real sshd: before each start, the admin host publishes a
// newer bundle; the agent fetches it at once and is killed at a random
// instant of the fetch, install, reload or check.
func TestCrashPulledDeliveriesAreAllReloaded(t *testing.T) {
	testsshd.Require(t)
	sshd := testsshd.Start(t, testsshd.Options{})
	remote := filepath.Join(sshd.Dir, "ca", "nodes", "node-1")
	if err := os.MkdirAll(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	source := fmt.Sprintf("\n[source]\naddress = %q\nuser = %q\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"20s\"\n",
		sshd.Addr, sshd.User, sshd.Client.Path, sshd.KnownHosts)
	n := newCrashNode(t, "pull", source)
	cfg, _ := os.ReadFile(n.config)
	cfg = bytes.Replace(cfg, []byte(`mode = "pull"`), []byte(fmt.Sprintf("mode = \"pull\"\nremote_dir = %q", remote)), 1)
	testpki.WriteFile(t, n.root, "c.toml", cfg, 0o600)
	n.ca = testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(48 * time.Hour)})
	publish := func(p *testpki.Pair) {
		testpki.WriteFile(t, remote, "node.crt", p.CertPEM(), 0o644)
		testpki.WriteFile(t, remote, "node.key", p.KeyPEM(t), 0o600)
		testpki.WriteFile(t, remote, "cluster.crt", n.ca.CertPEM(), 0o644)
	}
	publish(n.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
	n.start()
	n.settle(&crashFigures{}, "", 0, func() bool { return n.fetches() > 0 })
	n.kill(true)
	var f crashFigures
	rounds := crashRounds(t, 50)
	for i := 0; i < rounds; i++ {
		p := n.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour + time.Duration(i+1)*time.Second)})
		if i%4 == 3 {
			testpki.WriteFile(t, n.root, "bad.crt", p.CertPEM(), 0o644)
		}
		publish(p)
		prev := n.liveGen()
		_, offset := n.reloadLines(0)
		n.start()
		time.Sleep(time.Duration(mrand.IntN(250)) * time.Millisecond)
		group := i%2 == 0
		n.kill(group)
		f.kills++
		if group {
			f.groupKills++
		}
		n.start()
		n.settle(&f, prev, offset, func() bool { return n.fetches() > 0 })
		n.kill(true)
	}
	f.log(t, "pull")
}

// CSR renewals through a real sshd whose forced command signs: with its
// clock moved into the renewal window the agent renews at once, again and
// again, and is killed at a random instant; restarted on the true clock
// (nothing due) it only pays what it owes.
func TestCrashCSRDeliveriesAreAllReloaded(t *testing.T) {
	testsshd.Require(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(2 * 365 * 24 * time.Hour)})
	testpki.WriteFile(t, caDir, "ca.crt", ca.CertPEM(), 0o644)
	testpki.WriteFile(t, caDir, "ca.key", ca.KeyPEM(t), 0o600)
	client := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	sshd := testsshd.Start(t, testsshd.Options{Client: client,
		AuthorizedKeys: fmt.Sprintf("command=\"CERTKEEPER_SIGN_HELPER=%s %s\" %s\n", caDir, exe, client.AuthorizedLine())})
	source := fmt.Sprintf("\n[source]\naddress = %q\nuser = %q\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"20s\"\n",
		sshd.Addr, sshd.User, client.Path, sshd.KnownHosts)
	n := newCrashNode(t, "csr", source)
	n.ca = ca
	first := ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)})
	n.drop([]agentInput{{"a.crt", first.CertPEM()}, {"a.key", first.KeyPEM(t)}, {"ca.crt", ca.CertPEM()}})
	n.start()
	n.settle(&crashFigures{}, "", 0, func() bool { return len(inboxNames(n.inbox)) == 0 })
	n.kill(true)
	var f crashFigures
	rounds := crashRounds(t, 50)
	for i := 0; i < rounds; i++ {
		prev := n.liveGen()
		_, offset := n.reloadLines(0)
		n.start("CERTKEEPER_CRASH_SKEW=8500h") // in the renewal window of every certificate it gets
		time.Sleep(time.Duration(mrand.IntN(400)) * time.Millisecond)
		group := i%2 == 0
		n.kill(group)
		f.kills++
		if group {
			f.groupKills++
		}
		n.start()
		n.settle(&f, prev, offset, nil)
		n.kill(true)
	}
	f.log(t, "csr")
}
