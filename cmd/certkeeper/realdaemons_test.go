//go:build linux

package main

// Real daemons from Debian packages (nginx, etcd, mosquitto), started by
// the tests on loopback ports with their own configs and pid files in
// temporary directories, their certificates installed by real `certkeeper
// agent` processes through the inbox, from a CA made by `certkeeper ca`.
// Each test skips, saying which package to install, only when the daemon is
// not installed, and never when CI=true.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// needDaemon returns the absolute path of a daemon's binary, or skips the
// test (fails it under CI) when its Debian package is not installed.
func needDaemon(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (%v): install the Debian package %s (scripts/test does, as root)", path, err, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s (apt-get install %s) to run this test", path, pkg, pkg)
	}
	return path
}

// clusterCA is a CA made by `certkeeper ca init`, issuing with `ca issue`.
type clusterCA struct {
	t   *testing.T
	dir string
}

func newClusterCA(t *testing.T) *clusterCA {
	t.Helper()
	c := &clusterCA{t: t, dir: filepath.Join(t.TempDir(), "ca")}
	if r := certkeeper(t, "ca", "init", "--dir", c.dir, "--name", "realdaemons"); r.code != 0 {
		t.Fatalf("ca init: %+v", r)
	}
	return c
}

// issue makes (or, again, with a new serial) each node's certificate for
// 127.0.0.1 and localhost.
func (c *clusterCA) issue(ids ...string) {
	c.t.Helper()
	args := append([]string{"ca", "issue", "--dir", c.dir, "node"}, ids...)
	args = append(args, "--ip", "127.0.0.1", "--dns", "localhost", "--force")
	if r := certkeeper(c.t, args...); r.code != 0 {
		c.t.Fatalf("ca issue %v: %+v", ids, r)
	}
}

// files is what `ca issue` published for a node: node.crt, node.key,
// cluster.crt.
func (c *clusterCA) files(id string) map[string][]byte {
	c.t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"node.crt", "node.key", "cluster.crt"} {
		b, err := os.ReadFile(filepath.Join(c.dir, "nodes", id, name))
		if err != nil {
			c.t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

func (c *clusterCA) path(id, name string) string { return filepath.Join(c.dir, "nodes", id, name) }

// serial is the published certificate's serial for a node.
func (c *clusterCA) serial(id string) string {
	c.t.Helper()
	return certSerial(c.t, c.files(id)["node.crt"])
}

// tlsConfig is a client's: the client certificate issued for id, the
// cluster CA as the only root.
func (c *clusterCA) tlsConfig(id string) *tls.Config {
	c.t.Helper()
	f := c.files(id)
	cert, err := tls.X509KeyPair(f["node.crt"], f["node.key"])
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f["cluster.crt"])
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func certSerial(t *testing.T, pemData []byte) string {
	t.Helper()
	b, _ := pem.Decode(pemData)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return serialHex(c.SerialNumber)
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%X", n) }

// servedSerial does a mutual-TLS handshake with addr, verifying the
// served chain, and returns the served leaf's serial.
func servedSerial(cfg *tls.Config, addr string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return serialHex(conn.ConnectionState().PeerCertificates[0].SerialNumber), nil
}

// waitServed waits until addr serves serial.
func waitServed(t *testing.T, cfg *tls.Config, addr, serial string) {
	t.Helper()
	var last string
	var lastErr error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		last, lastErr = servedSerial(cfg, addr)
		if last == serial {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still serves serial %s (%v), want %s", addr, last, lastErr, serial)
}

// waitPort waits until a TCP port accepts connections, failing early if
// the process ended.
func waitPort(t *testing.T, addr string, d *daemonProc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !d.alive() {
			t.Fatalf("%s exited before listening on %s:\n%s", d.name, addr, d.output())
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not listen on %s after 30s:\n%s", d.name, addr, d.output())
}

// daemonProc is a daemon the test started; t.Cleanup stops it by its pid
// and checks it is gone.
type daemonProc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	done    chan struct{}
}

func startDaemon(t *testing.T, name, dir string, argv ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{name: name, outPath: filepath.Join(dir, name+".out"), done: make(chan struct{})}
	out, err := os.Create(d.outPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.Dir = dir
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		d.cmd.Wait()
		out.Close()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *daemonProc) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *daemonProc) output() string {
	b, _ := os.ReadFile(d.outPath)
	return string(b)
}

// stop sends SIGTERM to the daemon's process group (its workers too),
// then SIGKILL after 10 s, and checks that the pid is gone.
func (d *daemonProc) stop(t *testing.T) {
	pid := d.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-d.done
	}
	// Workers left in the group after their master: killed, then gone.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("%s pid %d still exists", d.name, pid)
	}
}

// member is one node: a live directory, an inbox and a real agent.
type member struct {
	*node
	id    string
	inbox string
	agent *agentProc
}

// newMember writes an agent config for node id (layout flocker-node: the
// files ca issue publishes) with extra bundle lines, and starts the agent.
func newMember(t *testing.T, id, extra string) *member {
	t.Helper()
	n := newNode(t, "flocker-node", id, extra)
	m := &member{node: n, id: id, inbox: filepath.Join(n.root, "state", "inbox", "b")}
	m.agent = startAgent(t, n.config)
	return m
}

// drop copies what ca issue published for the member into its inbox, as
// an admin's scp would.
func (m *member) drop(c *clusterCA) {
	m.t.Helper()
	for name, data := range c.files(m.id) {
		if err := os.WriteFile(filepath.Join(m.inbox, name), data, 0o600); err != nil {
			m.t.Fatal(err)
		}
	}
}

// waitLive waits until the member's live certificate has serial.
func (m *member) waitLive(serial string) {
	m.t.Helper()
	waitFor(m.t, m.id+"'s live certificate to be "+serial, func() bool {
		b, err := os.ReadFile(filepath.Join(m.live, "node.crt"))
		return err == nil && len(b) > 0 && certSerial(m.t, b) == serial
	})
}

// waitInboxTaken waits until the agent took (or refused) what was dropped.
func (m *member) waitInboxTaken() {
	m.t.Helper()
	waitFor(m.t, m.id+"'s inbox to be emptied", func() bool { return len(inboxFiles(m.inbox)) == 0 })
}

// loadLoop is a client loop: one request after another, each on a new
// connection (so each sees the certificate served at that moment), until
// stopped or its bound is reached.
type loadLoop struct {
	mu       sync.Mutex
	requests int
	failures []string
	serials  map[string]bool
	stop     chan struct{}
	done     chan struct{}
}

// runLoad calls req (which returns the served serial) every pause, for at
// most limit.
func runLoad(limit, pause time.Duration, req func(i int) (string, error)) *loadLoop {
	l := &loadLoop{serials: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		end := time.Now().Add(limit)
		for i := 0; time.Now().Before(end); i++ {
			serial, err := req(i)
			l.mu.Lock()
			l.requests++
			if err != nil {
				l.failures = append(l.failures, err.Error())
			} else if serial != "" {
				l.serials[serial] = true
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-time.After(pause):
			}
		}
	}()
	return l
}

// finish stops the loop and returns its figures.
func (l *loadLoop) finish() (requests int, failures []string, serials int) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, l.failures, len(l.serials)
}

func (l *loadLoop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests
}

// waitRequests waits until the loop made n more requests than before:
// the rotation happened under load.
func (l *loadLoop) waitRequests(t *testing.T, n int) {
	t.Helper()
	start := l.count()
	waitFor(t, fmt.Sprintf("%d requests of the client loop", n), func() bool { return l.count() >= start+n })
}

// countIn counts the occurrences of s in a file.
func countIn(path, s string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), s)
}
