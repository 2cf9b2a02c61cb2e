//go:build unix

package fleet_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// A node of an agent fleet is what a real node runs: its sshd (the push
// account's SSH and SFTP, from testFleet), a real certkeeper agent
// (agent.Run, in this process or, to be killed, in a child process),
// the real test daemon (internal/testdaemon, mutual TLS, reloaded by
// SIGHUP through its pidfile) serving the live directory, the inbox push
// writes to, and the agent's state directory whose report.json fleet
// status reads over SFTP.

// Environment of the agent child process (TestMain): the config to run,
// and the report heartbeat.
const (
	envAgentConfig    = "CERTKEEPER_FLEET_TEST_AGENT"
	envAgentHeartbeat = "CERTKEEPER_FLEET_TEST_HEARTBEAT"
)

// TestMain runs the agent when the test binary is started as a node's
// agent process (agentChild): the same agent.Run as in-process, but a
// process of its own that a test can SIGKILL.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(envAgentConfig); cfg != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		hb, _ := time.ParseDuration(os.Getenv(envAgentHeartbeat))
		err := agent.Run(ctx, cfg, agent.Options{Version: "test", ReportHeartbeat: hb, Hangup: make(chan struct{})})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nodeSpec is how one node of an agent fleet differs from the others.
type nodeSpec struct {
	// IgnoreHUP runs the daemon with -ignore-hup: it keeps serving what
	// it started with.
	IgnoreHUP bool
	// Policy is the bundle's served_mismatch ("" : the default, report).
	Policy string
	// Check is the bundle's check command; nil: exits 0.
	Check []string
	// Child runs the agent as a child process instead of in-process.
	Child bool
}

type agentNode struct {
	id                      string
	dir, state, live, inbox string
	config                  string
	spec                    nodeSpec
	daemon                  *daemontest.Daemon
	log                     *syncBuffer // in-process agent's log
	stop                    func()      // in-process agent: cancel and wait
	child                   *exec.Cmd
	childDone               chan struct{}
	childLog                string
	firstSerial             string
}

type agentFleet struct {
	*testFleet
	node map[string]*agentNode
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// newAgentFleet starts n nodes, each with the CA's first certificate
// installed and served, and its agent running; it returns once every
// node's report shows that certificate installed and served, and healthy.
// heartbeat is the agents' report heartbeat (0: the default).
func newAgentFleet(t *testing.T, n int, heartbeat time.Duration, spec func(id string) nodeSpec) *agentFleet {
	t.Helper()
	daemontest.Build(t)
	f := &agentFleet{testFleet: newFleet(t, n), node: map[string]*agentNode{}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, id := range f.ids {
		s := f.servers[id]
		an := &agentNode{id: id, dir: s.Dir, state: filepath.Join(s.Dir, "state"), live: filepath.Join(s.Dir, "live"),
			inbox: filepath.Join(s.Dir, "inbox"), config: filepath.Join(s.Dir, "certkeeper.toml")}
		if spec != nil {
			an.spec = spec(id)
		}
		f.node[id] = an
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.install(an); err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range f.ids {
		an := f.node[id]
		if err := os.Mkdir(filepath.Join(an.dir, "daemon"), 0o700); err != nil {
			t.Fatal(err)
		}
		an.daemon = daemontest.Start(t, daemontest.Options{Dir: filepath.Join(an.dir, "daemon"), IgnoreHUP: an.spec.IgnoreHUP,
			Cert: filepath.Join(an.live, "node.crt"), Key: filepath.Join(an.live, "node.key"), CA: filepath.Join(an.live, "cluster.crt")})
		f.writeConfig(t, an)
		f.startAgent(t, an, heartbeat)
	}
	for _, id := range f.ids {
		an := f.node[id]
		f.waitReport(t, id, "the first served check", 30*time.Second, func(b *fleet.BundleReport) bool {
			return same(b.Serial, an.firstSerial) && same(b.ServedSerial, an.firstSerial) && b.Health == "OK"
		})
	}
	return f
}

// install makes the CA's published bundle of the node its first live
// generation, as `certkeeper install` does, before anything runs.
func (f *agentFleet) install(an *agentNode) error {
	// The served endpoint is not known yet (the daemon needs the live
	// files to start); it does not shape the generation store.
	if err := os.WriteFile(an.config, []byte(f.configText(an, "127.0.0.1:1", "/nonexistent")), 0o600); err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(an.config)
	if err != nil {
		return err
	}
	src := filepath.Join(f.caDir, "nodes", an.id)
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	var paths []string
	for _, e := range ents {
		paths = append(paths, filepath.Join(src, e.Name()))
	}
	in, err := agent.ReadInputs(paths)
	if err != nil {
		return err
	}
	if _, err := rotate.NewManager(cfg.Bundles[0].Spec()).Install(in, "test"); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(src, "node.crt"))
	if err != nil {
		return err
	}
	c, err := parseCertErr(data)
	if err != nil {
		return err
	}
	an.firstSerial = pki.Serial(c)
	return nil
}

func (f *agentFleet) configText(an *agentNode, served, pidfile string) string {
	check := an.spec.Check
	if check == nil {
		check = []string{"/bin/sh", "-c", "exit 0"}
	}
	var q []string
	for _, a := range check {
		q = append(q, fmt.Sprintf("%q", a))
	}
	policy := an.spec.Policy
	if policy == "" {
		policy = agent.ServedReport
	}
	return fmt.Sprintf(`node_id = %q
state_dir = %q
rescan_interval = "1s"

[[bundle]]
name = "web"
layout = "flocker-node"
dir = %q
inbox = %q
served = %q
served_wait = "300ms"
served_mismatch = %q
check = [%s]
check_timeout = "10s"

  [[bundle.reload]]
  signal = "HUP"
  pidfile = %q
`, an.id, an.state, an.live, an.inbox, served, policy, strings.Join(q, ", "), pidfile)
}

func (f *agentFleet) writeConfig(t *testing.T, an *agentNode) {
	t.Helper()
	if err := os.WriteFile(an.config, []byte(f.configText(an, an.daemon.Addr, an.daemon.Pidfile)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startAgent runs the node's agent until the test ends.
func (f *agentFleet) startAgent(t *testing.T, an *agentNode, heartbeat time.Duration) {
	t.Helper()
	if an.spec.Child {
		an.childLog = filepath.Join(an.dir, "agent.log")
		logf, err := os.Create(an.childLog)
		if err != nil {
			t.Fatal(err)
		}
		an.child = exec.Command(os.Args[0], "-test.run=^$")
		an.child.Env = append(os.Environ(), envAgentConfig+"="+an.config, envAgentHeartbeat+"="+heartbeat.String())
		an.child.Stdout, an.child.Stderr = logf, logf
		if err := an.child.Start(); err != nil {
			t.Fatal(err)
		}
		an.childDone = make(chan struct{})
		go func() { an.child.Wait(); logf.Close(); close(an.childDone) }()
		t.Cleanup(func() { f.killAgent(t, an.id) })
		return
	}
	an.log = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, an.config, agent.Options{Logger: slog.New(slog.NewTextHandler(an.log, nil)), Version: "test",
			ReportHeartbeat: heartbeat, Hangup: make(chan struct{})})
	}()
	stopped := false
	an.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: agent: %v", an.id, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s: the agent did not stop within 15s of its cancel", an.id)
		}
	}
	t.Cleanup(an.stop)
}

// killAgent SIGKILLs a child agent (as a crash or the OOM killer would)
// and waits until it is gone.
func (f *agentFleet) killAgent(t *testing.T, id string) {
	an := f.node[id]
	select {
	case <-an.childDone:
		return
	default:
	}
	an.child.Process.Kill()
	select {
	case <-an.childDone:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: agent pid %d still runs 10s after SIGKILL", id, an.child.Process.Pid)
	}
}

func (an *agentNode) agentLog() string {
	if an.log != nil {
		return an.log.String()
	}
	b, _ := os.ReadFile(an.childLog)
	return string(b)
}

// report reads the node's report from its state directory (the test's
// own look; fleet status reads it over SFTP).
func (f *agentFleet) report(id string) (*fleet.Report, error) {
	data, err := os.ReadFile(filepath.Join(f.node[id].state, fleet.ReportFileName))
	if err != nil {
		return nil, err
	}
	return fleet.ParseReport(data)
}

// waitReport waits, bounded, until the node's report's bundle satisfies ok.
func (f *agentFleet) waitReport(t *testing.T, id, what string, limit time.Duration, ok func(*fleet.BundleReport) bool) *fleet.Report {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last *fleet.Report
	for {
		r, err := f.report(id)
		if err == nil && len(r.Bundles) == 1 {
			last = r
			if ok(&r.Bundles[0]) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %s; last report %+v\nagent log:\n%s\ndaemon log:\n%s", id, what, limit, last, f.node[id].agentLog(), f.node[id].daemon.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hups is how many SIGHUPs the node's daemon got (taken or ignored).
func (an *agentNode) hups() int {
	l := an.daemon.Log()
	return strings.Count(l, "SIGHUP ignored") + strings.Count(l, "reloaded: serving")
}

func same(a, b string) bool { return fleet.NormSerial(a) == fleet.NormSerial(b) }

func (f *testFleet) reissue(t *testing.T, id string) {
	t.Helper()
	r, err := authority.NodeRequest(id, authority.Names{}, "")
	if err != nil {
		t.Fatal(err)
	}
	f.issue(t, r)
}

func parseCertErr(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("no PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}
