//go:build unix

package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
)

// Supported reports whether the demo runs on this system: it needs Unix
// signals (the daemons reload on SIGHUP) and process groups.
const Supported = true

// node is one of the demo's nodes: a directory standing for its file
// system, an agent config, an agent process, a daemon.
type node struct {
	ID, Layout, Bundle string
	// RenewsBy is how renewed certificates reach it: push, pull or csr.
	RenewsBy string
	Root     string // the node's "/"
	Config   string
	cfg      *agent.Config
	b        *agent.Bundle
	key      ssh.Signer // its SSH login key (pull and CSR nodes)

	agent      *proc
	started    time.Time
	daemon     *proc
	daemonAddr string
	// first is the serial (NormalizeSerial) of its first certificate,
	// firstExpiry when that expires.
	first       string
	firstExpiry time.Time
	renewed     bool
}

func (n *node) path(p ...string) string { return filepath.Join(append([]string{n.Root}, p...)...) }

type run struct {
	o        Options
	r        Reporter
	exe      string
	dir      string
	caDir    string
	lifetime time.Duration

	nodes     []*node
	admin     *sshServer // the admin host's sshd
	nodeSSH   *sshServer // node1's sshd, which the admin pushes to
	inventory string
	client    tls.Certificate
	roots     *x509.CertPool
	signs     chan signEvent
	timer     chan timerEvent

	steps, failed int
}

type discard struct{}

func (discard) Section(string)                {}
func (discard) Note(string)                   {}
func (discard) Step(bool, string)             {}
func (discard) Status([]Row, time.Time, bool) {}

// Run plays the demo. It returns an error only when it could not start
// (no directory, no executable); everything after that is reported as
// steps, and Summary counts the failures.
func Run(parent context.Context, o Options) (Summary, error) {
	start := time.Now()
	d := &run{o: o, r: o.Report, lifetime: o.Lifetime, signs: make(chan signEvent, 16), timer: make(chan timerEvent, 16)}
	if d.r == nil {
		d.r = discard{}
	}
	if d.lifetime == 0 {
		d.lifetime = DefaultLifetime
	}
	if d.lifetime < 20*time.Second || d.lifetime > 10*time.Minute {
		return Summary{}, fmt.Errorf("a certificate lifetime of %s is outside what the demo can show (20s to 10m)", d.lifetime)
	}
	d.exe = o.Executable
	if d.exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return Summary{}, fmt.Errorf("find the certkeeper executable to run the agents with: %w", err)
		}
		d.exe = exe
	}
	dir, err := os.MkdirTemp(o.TempDir, "certkeeper-demo-")
	if err != nil {
		return Summary{}, fmt.Errorf("make the demo's directory: %w", err)
	}
	// The real path: the agents' configs and the daemons' files name it,
	// and a symlinked temporary directory (macOS's /var) would be refused
	// as a live directory's parent.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	d.dir, d.caDir = dir, filepath.Join(dir, "admin", "ca")

	// Every wait below is bounded; this bounds the whole, in case the
	// machine is so slow that the waits add up.
	limit := 4*d.lifetime + 2*time.Minute
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	err = d.play(ctx)
	interrupted := parent.Err() != nil
	switch {
	case interrupted:
		d.r.Note("Interrupted: stopping everything the demo started.")
	case ctx.Err() != nil:
		d.fail(fmt.Errorf("the demo did not finish within %s: the machine is too busy for it now (%w)", limit, err))
	case err != nil:
		d.fail(err)
	}
	d.cleanup()
	sum := Summary{Dir: d.dir, Steps: d.steps, Failed: d.failed, Interrupted: interrupted, Took: time.Since(start)}
	return sum, nil
}

func (d *run) ok(pattern string, a ...any) {
	d.steps++
	d.r.Step(true, textf(pattern, a...))
}

func (d *run) notef(pattern string, a ...any) { d.r.Note(textf(pattern, a...)) }

func (d *run) fail(err error) {
	d.steps++
	d.failed++
	d.r.Step(false, err.Error())
}

// play runs the story; an error ends it (cleanup follows).
func (d *run) play(ctx context.Context) error {
	d.r.Section("The admin host")
	d.notef("Everything lives in %s (the paths below are relative to it) and talks over 127.0.0.1 only.\n"+
		"The admin host is this process: a cluster CA (what `certkeeper ca` does) and an SSH server standing in for its sshd.", d.dir)
	if err := d.makeNodes(); err != nil {
		return err
	}
	if err := d.makeCA(ctx); err != nil {
		return err
	}
	if err := d.startServers(); err != nil {
		return err
	}

	d.r.Section("Push to node1")
	d.r.Note("Each node is a directory standing for its root file system, with a real `certkeeper agent` process.\n" +
		"node1's agent has no source: the admin pushes its bundles into its inbox over SSH.")
	n1, n2, n3 := d.nodes[0], d.nodes[1], d.nodes[2]
	if err := d.startAgent(ctx, n1); err != nil {
		return err
	}
	pushed := time.Now()
	if err := d.push(ctx, n1); err != nil {
		return err
	}
	if err := d.waitInstalled(ctx, n1, pushed, "what came into its inbox"); err != nil {
		return err
	}

	d.r.Section("Pull by node2")
	d.r.Note("node2's agent has [source]: it logs in to the admin host as ck-node2 and reads nodes/node2/.")
	if err := d.startAgent(ctx, n2); err != nil {
		return err
	}
	if err := d.waitInstalled(ctx, n2, time.Time{}, "what it pulled at its start"); err != nil {
		return err
	}

	d.r.Section("node3: its first bundle, then certificate requests")
	d.r.Note("node3's bundle has mode = \"csr\": it pulls its first bundle as ck-node3, and renews by sending a\n" +
		"certificate request to certkeeper-ca@admin, whose forced command is `certkeeper ca sign`. Its key never travels again.")
	if err := d.startAgent(ctx, n3); err != nil {
		return err
	}
	if err := d.waitInstalled(ctx, n3, time.Time{}, "what it pulled at its start"); err != nil {
		return err
	}

	d.r.Section("The daemons")
	d.r.Note("Each node runs a daemon serving mutual TLS with its live files (`certkeeper demo daemon`, a stand-in for\n" +
		"flocker-dataset-agent, mesos-agent, glow); each bundle's reload action sends it SIGHUP through its pid file.")
	for _, n := range d.nodes {
		if err := d.startDaemon(ctx, n); err != nil {
			return err
		}
	}

	d.r.Section("Drift repair")
	if err := d.drift(ctx, n1); err != nil {
		if ctx.Err() != nil {
			return err
		}
		d.fail(err)
	}

	d.r.Section("A bad bundle")
	if err := d.badBundle(ctx, n1, n2); err != nil {
		if ctx.Err() != nil {
			return err
		}
		d.fail(err)
	}

	d.r.Section("Renewal")
	d.notef("The certificates live %s. The admin host's timer runs `certkeeper ca renew --within 40%%` every second\n"+
		"(the shipped timer's rule, run hourly on a real admin host) and pushes what it re-issued for node1; node2 pulls\n"+
		"when its window opens (renew_at = 0.75); node3 sends a request at half its lifetime (renew_at = 0.5).", d.lifetime)
	return d.renewals(ctx)
}

// makeNodes lays out the nodes' directories and keys.
func (d *run) makeNodes() error {
	d.nodes = []*node{
		{ID: "node1", Layout: "flocker-node", Bundle: "flocker", RenewsBy: "push"},
		{ID: "node2", Layout: "mesos", Bundle: "mesos", RenewsBy: "pull"},
		{ID: "node3", Layout: "glow", Bundle: "glow", RenewsBy: "csr"},
	}
	for _, n := range d.nodes {
		n.Root = filepath.Join(d.dir, n.ID)
		n.Config = n.path("etc", "certkeeper", "certkeeper.toml")
		for _, p := range []string{n.path("etc", "certkeeper"), n.path("var", "lib", "certkeeper"), n.path("var", "log"), n.path("run")} {
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		}
		if n.RenewsBy != "push" {
			k, err := writeIdentity(n.path("etc", "certkeeper", "id_ed25519"), "root@"+n.ID)
			if err != nil {
				return fmt.Errorf("%s's SSH key: %w", n.ID, err)
			}
			n.key = k
		}
	}
	return os.MkdirAll(filepath.Join(d.dir, "admin"), 0o700)
}

// makeCA is `certkeeper ca init` and `ca issue`, in this process.
func (d *run) makeCA(ctx context.Context) error {
	s := authority.DefaultSettings("demo-cluster")
	s.NodeLifetimeText = d.lifetime.String()
	a, err := authority.Init(d.caDir, authority.InitParams{Settings: s}, authority.Options{})
	if err != nil {
		return fmt.Errorf("the demo's CA in %s: %w", d.caDir, err)
	}
	d.ok("ca init: CA %q in %s: cluster.key 0600, cluster.crt; node certificates live %s (node_lifetime in ca.toml)",
		s.Name, d.rel(d.caDir), d.lifetime)
	ip, err := authority.ParseNames(nil, []string{"127.0.0.1"})
	if err != nil {
		return err
	}
	var reqs []authority.Request
	for _, n := range d.nodes {
		r, err := authority.NodeRequest(n.ID, ip, "")
		if err != nil {
			return err
		}
		reqs = append(reqs, r)
	}
	res, err := a.Issue(ctx, reqs, authority.IssueOptions{})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("issue the nodes' certificates: %w", err)
	}
	cr, err := authority.NodeRequest("demo-client", authority.Names{}, "")
	if err != nil {
		return err
	}
	res, err = a.Issue(ctx, []authority.Request{cr}, authority.IssueOptions{Days: 1})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("issue the demo's client certificate: %w", err)
	}
	pub := filepath.Join(d.caDir, authority.NodesDir, "demo-client")
	d.client, err = tls.LoadX509KeyPair(filepath.Join(pub, "node.crt"), filepath.Join(pub, "node.key"))
	if err != nil {
		return err
	}
	d.roots = x509.NewCertPool()
	d.roots.AddCert(a.Cert)
	d.ok("ca issue: node1, node2, node3 (CN = the id, IP address 127.0.0.1) and demo-client (1 day, the demo's TLS client),\n"+
		"each published as %s/nodes/<id>/: node.crt, node.key 0600, cluster.crt", d.rel(d.caDir))
	return nil
}

// startServers starts the admin host's sshd and node1's, and pins their
// host keys where the other side checks them.
func (d *run) startServers() error {
	n1, n2, n3 := d.nodes[0], d.nodes[1], d.nodes[2]
	hostKey, err := newHostKey()
	if err != nil {
		return err
	}
	nodesDir := filepath.Join(d.caDir, authority.NodesDir)
	d.admin, err = startSSHServer(hostKey, []account{
		{User: "ck-node2", Key: n2.key.PublicKey(), SFTPDir: filepath.Join(nodesDir, "node2"), SFTPPrefix: "nodes/node2", ReadOnly: true},
		{User: "ck-node3", Key: n3.key.PublicKey(), SFTPDir: filepath.Join(nodesDir, "node3"), SFTPPrefix: "nodes/node3", ReadOnly: true},
		{User: "certkeeper-ca", Key: n3.key.PublicKey(), SignNode: "node3"},
	}, d.caSign, d.onSign)
	if err != nil {
		return fmt.Errorf("start the admin host's SSH server: %w", err)
	}
	for _, n := range []*node{n2, n3} {
		if err := distribute.Pin(n.path("etc", "certkeeper", "known_hosts"), d.admin.Addr, d.admin.HostKey); err != nil {
			return err
		}
	}
	d.ok("admin host's sshd on %s, host key %s,\n"+
		"pinned in node2's and node3's known_hosts (as `certkeeper trust` would). ck-node2 and ck-node3 each read\n"+
		"only their own nodes/<id>/, read-only (the chroots of `certkeeper sshd-config`); certkeeper-ca lets node3's\n"+
		"key run `certkeeper ca sign --node node3` and nothing else",
		d.admin.Addr, ssh.FingerprintSHA256(d.admin.HostKey))

	adminDir := filepath.Join(d.dir, "admin")
	adminKey, err := writeIdentity(filepath.Join(adminDir, "id_ed25519"), "admin@demo")
	if err != nil {
		return fmt.Errorf("the admin's SSH key: %w", err)
	}
	nodeKey, err := newHostKey()
	if err != nil {
		return err
	}
	d.nodeSSH, err = startSSHServer(nodeKey, []account{{User: "root", Key: adminKey.PublicKey(), SFTPDir: n1.Root}}, nil, nil)
	if err != nil {
		return fmt.Errorf("start node1's SSH server: %w", err)
	}
	if err := distribute.Pin(filepath.Join(adminDir, "known_hosts"), d.nodeSSH.Addr, d.nodeSSH.HostKey); err != nil {
		return err
	}
	d.inventory = filepath.Join(adminDir, "nodes.toml")
	inv := textf(`# inventory: the push inventory of the certkeeper demo's admin host
[defaults]
user          = "root"
identity_file = "id_ed25519"
known_hosts   = "known_hosts"
timeout       = "10s"

[[node]]
id      = "node1"
address = %q
target  = "/var/lib/certkeeper/inbox/flocker"   # node1's inbox; its sshd serves %s as /
layout  = "flocker-node"
`, d.nodeSSH.Addr, n1.Root)
	if err := os.WriteFile(d.inventory, []byte(inv), 0o600); err != nil {
		return err
	}
	d.ok("node1's sshd on %s: SFTP confined to %s/, which stands for node1's /; its host key is pinned in\n"+
		"%s, and %s is the push inventory", d.nodeSSH.Addr, d.rel(n1.Root), d.rel(filepath.Join(adminDir, "known_hosts")), d.rel(d.inventory))
	return nil
}

// caSign is the admin host's forced command: the real `certkeeper ca
// sign`, run as authorized_keys' command= would run it, with what the
// client asked for in SSH_ORIGINAL_COMMAND as sshd sets it (ca sign
// tells a node's own request from a request an admin hands in by it).
func (d *run) caSign(ctx context.Context, node, asked string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, d.exe, "ca", "sign", "--dir", d.caDir, "--node", node)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = append(childEnv(), "SSH_ORIGINAL_COMMAND="+asked)
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	}
	io.WriteString(stderr, "the forced command did not run to its end: "+err.Error()+"\n")
	return 1
}

func (d *run) onSign(e signEvent) {
	select {
	case d.signs <- e:
	default:
	}
}

// config writes a node's agent config and loads it with the real loader.
func (d *run) config(n *node) error {
	var src, extra string
	reload := textf(`
  [[bundle.reload]]
  signal          = "HUP"        # the node's daemon re-reads its files
  pidfile         = %q
  only_if_running = true
`, n.path("run", "daemon.pid"))
	switch n.RenewsBy {
	case "push":
		extra = "renew_at = 0.75   # the admin host re-issues at 40% left and pushes, before this window opens\n"
	case "pull":
		src = textf(`
[source]
address       = %q
user          = "ck-node2"
identity_file = %q
known_hosts   = %q
timeout       = "10s"
`, d.admin.Addr, n.path("etc", "certkeeper", "id_ed25519"), n.path("etc", "certkeeper", "known_hosts"))
		extra = "renew_at = 0.75   # the admin host re-issues at 40% left; the agent takes it when this window opens\n"
	case "csr":
		src = textf(`
[source]
address       = %q
user          = "ck-node3"       # pulls the first bundle
csr_user      = "certkeeper-ca"  # certificate requests: the forced ca sign
identity_file = %q
known_hosts   = %q
timeout       = "10s"
`, d.admin.Addr, n.path("etc", "certkeeper", "id_ed25519"), n.path("etc", "certkeeper", "known_hosts"))
		extra = "mode     = \"csr\"\nrenew_at = 0.5    # a request at half the lifetime\n"
	}
	dir := map[string]string{"flocker-node": "etc/flocker", "mesos": "etc/mesos/pki", "glow": "etc/glow/ssl"}[n.Layout]
	text := textf(`# %s of the certkeeper demo; paths are under %s, which stands for the node's /
node_id    = %q
state_dir  = %q
log_format = "text"
%s
[[bundle]]
name   = %q
layout = %q
dir    = %q
%s%s`, n.ID, n.Root, n.ID, n.path("var", "lib", "certkeeper"), src, n.Bundle, n.Layout, n.path(dir), extra, reload)
	if err := os.WriteFile(n.Config, []byte(text), 0o600); err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(n.Config)
	if err != nil {
		return err
	}
	n.cfg, n.b = cfg, &cfg.Bundles[0]
	return nil
}

// state is what the node's agent last wrote to its state file.
func (d *run) state(n *node) agent.BundleState {
	st, err := agent.ReadState(n.cfg)
	if err != nil || st == nil || len(st.Bundles) == 0 {
		return agent.BundleState{}
	}
	return st.Bundles[0]
}

// startAgent writes the node's config and starts `certkeeper agent` on
// it, waiting until the agent has looked at its bundle once.
func (d *run) startAgent(ctx context.Context, n *node) error {
	if err := d.config(n); err != nil {
		return fmt.Errorf("%s's config: %w", n.ID, err)
	}
	n.started = time.Now()
	p, err := startProc(n.ID+"'s agent", d.exe, []string{"agent", "--config", n.Config}, n.path("var", "log", "certkeeper-agent.log"))
	if err != nil {
		return fmt.Errorf("start %s's agent: %w", n.ID, err)
	}
	n.agent = p
	err = waitFor(ctx, 15*time.Second, func() bool {
		st, err := agent.ReadState(n.cfg)
		return p.Exited() || err == nil && st != nil && st.PID == p.Pid()
	})
	if p.Exited() {
		return fmt.Errorf("%s's agent stopped at once: %s", n.ID, tail(p.Log))
	}
	if err != nil {
		return fmt.Errorf("%s's agent did not start within 15s: %w; its log: %s", n.ID, err, tail(p.Log))
	}
	how := map[string]string{
		"push": "no source, so bundles come into its inbox " + d.rel(n.b.Inbox),
		"pull": "[source] ck-node2@" + d.admin.Addr,
		"csr":  "[source] ck-node3@" + d.admin.Addr + " (first bundle), csr_user certkeeper-ca",
	}[n.RenewsBy]
	d.ok("%s: certkeeper agent --config %s (pid %d): layout %s into\n%s; %s",
		n.ID, d.rel(n.Config), p.Pid(), n.Layout, d.rel(n.b.Resolved.Dir), how)
	return nil
}

// push is `certkeeper push --inventory admin/nodes.toml --only ID`.
func (d *run) push(ctx context.Context, n *node) error {
	inv, err := distribute.LoadInventory(d.inventory)
	if err != nil {
		return err
	}
	nodes, err := inv.Select([]string{n.ID})
	if err != nil {
		return err
	}
	r := distribute.Push(ctx, nodes, distribute.PushOptions{CADir: d.caDir})[0]
	if r.Err != nil {
		return fmt.Errorf("push to %s: %w", n.ID, r.Err)
	}
	hp, _ := nodes[0].SSH.HostPort()
	d.ok("certkeeper push --inventory %s --ca-dir %s: %s (%s) ok in %s:\nwrote %s into %s, each 0600 under a temporary name, then renamed",
		d.rel(d.inventory), d.rel(d.caDir), n.ID, hp, r.Took.Round(time.Millisecond), strings.Join(r.Files, ", "), nodes[0].Dir)
	return nil
}

// waitInstalled waits for a node's first install and records its serial;
// since, when set, is when what it installs was sent (a push).
func (d *run) waitInstalled(ctx context.Context, n *node, since time.Time, how string) error {
	var st agent.BundleState
	err := waitFor(ctx, 15*time.Second, func() bool {
		st = d.state(n)
		return st.Serial != "" && st.Counters.Installs > 0 || n.agent.Exited()
	})
	if n.agent.Exited() {
		return fmt.Errorf("%s's agent stopped before it installed anything; its log: %s", n.ID, tail(n.agent.Log))
	}
	if err != nil {
		detail := ""
		if st.LastError != nil {
			detail = "; its last error: " + st.LastError.Detail
		}
		return fmt.Errorf("%s's agent did not install %s within 15s (%w)%s; its log: %s", n.ID, how, err, detail, tail(n.agent.Log))
	}
	n.first, n.firstExpiry = NormalizeSerial(st.Serial), st.NotAfter
	if !since.IsZero() && st.LastInstall != nil {
		how += textf(" %s later", st.LastInstall.Time.Sub(since).Round(10*time.Millisecond))
	}
	d.ok("%s's agent installed %s: serial %s, expires in %s\n%s\n%s: %s",
		n.ID, how, short(n.first), time.Until(st.NotAfter).Round(time.Second), d.detail(st.LastInstall),
		d.rel(n.b.Resolved.Dir), liveFiles(n.b.Resolved.Dir))
	return nil
}

// detail is what the agent recorded of an event, with the demo's
// directory left out of its paths.
func (d *run) detail(e *agent.Event) string {
	if e == nil {
		return "-"
	}
	return strings.ReplaceAll(e.Detail, d.dir+string(filepath.Separator), "")
}

// rel writes a path under the demo's directory relative to it.
func (d *run) rel(p string) string {
	if r, err := filepath.Rel(d.dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// liveFiles lists a live directory's visible names with the modes of the
// files they lead to: "cluster.crt 0644, node.crt 0644, node.key 0600".
func liveFiles(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		out = append(out, textf("%s %04o", e.Name(), fi.Mode().Perm()))
	}
	text := strings.Join(out, ", ")
	if gen, err := os.Readlink(filepath.Join(dir, "..data")); err == nil {
		text += " (links into " + gen + ")"
	}
	return text
}

// startDaemon starts the node's daemon on its live files and checks, as a
// mutual-TLS client, that it serves the live certificate.
func (d *run) startDaemon(ctx context.Context, n *node) error {
	l := n.b.Resolved
	pidfile, addrfile := n.path("run", "daemon.pid"), n.path("run", "daemon.addr")
	p, err := startProc(n.ID+"'s daemon", d.exe, []string{"demo", "daemon",
		"-cert", filepath.Join(l.Dir, l.CertFile), "-key", filepath.Join(l.Dir, l.KeyFile), "-ca", filepath.Join(l.Dir, l.CAFile),
		"-listen", "127.0.0.1:0", "-pidfile", pidfile, "-addrfile", addrfile}, n.path("var", "log", "daemon.log"))
	if err != nil {
		return fmt.Errorf("start %s's daemon: %w", n.ID, err)
	}
	n.daemon = p
	err = waitFor(ctx, 10*time.Second, func() bool {
		_, perr := os.Stat(pidfile)
		b, aerr := os.ReadFile(addrfile)
		return p.Exited() || perr == nil && aerr == nil && strings.HasSuffix(string(b), "\n")
	})
	if err != nil || p.Exited() {
		return fmt.Errorf("%s's daemon did not start within 10s: %s", n.ID, tail(p.Log))
	}
	b, _ := os.ReadFile(addrfile)
	n.daemonAddr = strings.TrimSpace(string(b))
	ans, err := probe(ctx, n.daemonAddr, d.client, d.roots)
	if err != nil {
		return fmt.Errorf("%s's daemon: %w", n.ID, err)
	}
	if ans.Serial != n.first {
		return fmt.Errorf("%s's daemon serves serial %s, not the live %s", n.ID, short(ans.Serial), short(n.first))
	}
	d.ok("%s's daemon (pid %d) serves mutual TLS on %s: a client with a cluster certificate gets in,\n"+
		"checks the daemon's chain and address, and sees serial %s, the live one", n.ID, p.Pid(), n.daemonAddr, short(ans.Serial))
	return nil
}

// drift chmods the live key 0644 and watches the agent put it back.
func (d *run) drift(ctx context.Context, n *node) error {
	key := filepath.Join(n.b.Resolved.Dir, n.b.Resolved.KeyFile)
	before := d.state(n).Counters
	start := time.Now()
	if err := os.Chmod(key, 0o644); err != nil {
		return err
	}
	var mode os.FileMode
	err := waitFor(ctx, 5*time.Second, func() bool {
		fi, err := os.Stat(key)
		if err == nil {
			mode = fi.Mode().Perm()
		}
		return err == nil && mode == 0o600
	})
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("chmod 644 %s: still %04o after 5s (%w); the agent repairs drift within a second: see its log %s", key, mode, err, n.agent.Log)
	}
	var after agent.Counters
	waitFor(ctx, 3*time.Second, func() bool { after = d.state(n).Counters; return after.Repairs > before.Repairs })
	if after.Reloads != before.Reloads {
		return fmt.Errorf("%s's agent reloaded the daemon for a drift repair (reloads %d → %d); a repair restores what the daemon already has", n.ID, before.Reloads, after.Reloads)
	}
	d.ok("chmod 644 %s: the agent put it back to 0600 %s later, from the live generation's\n"+
		"record, without a reload (its counters: repairs %d, reloads %d)", d.rel(key), took.Round(10*time.Millisecond), after.Repairs, after.Reloads)
	return nil
}

// badBundle drops another node's bundle into n's inbox, as a mistaken scp
// would, and checks that it is rejected with its reason and that nothing
// live changed.
func (d *run) badBundle(ctx context.Context, n, other *node) error {
	before := d.state(n)
	src := filepath.Join(d.caDir, authority.NodesDir, other.ID)
	start := time.Now()
	for _, name := range []string{"node.crt", "node.key", "cluster.crt"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		// Under a temporary name first, as scp -p or rsync would: the
		// agent ignores dot-files until they are renamed.
		tmp := filepath.Join(n.b.Inbox, "."+name+".part")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(n.b.Inbox, other.ID+"-"+name)); err != nil {
			return err
		}
	}
	var st agent.BundleState
	err := waitFor(ctx, 10*time.Second, func() bool {
		st = d.state(n)
		return st.Counters.Rejected > before.Counters.Rejected
	})
	if err != nil {
		return fmt.Errorf("%s's bundle in %s's inbox was not rejected within 10s (%w); see %s", other.ID, n.ID, err, n.agent.Log)
	}
	took := time.Since(start)
	reason := d.detail(st.LastInstall)
	if NormalizeSerial(st.Serial) != NormalizeSerial(before.Serial) || st.Counters.Installs != before.Counters.Installs {
		return fmt.Errorf("%s's live bundle changed after the bad bundle (serial %s → %s)", n.ID, short(NormalizeSerial(before.Serial)), short(NormalizeSerial(st.Serial)))
	}
	ans, err := probe(ctx, n.daemonAddr, d.client, d.roots)
	if err != nil {
		return fmt.Errorf("%s's daemon after the bad bundle: %w", n.ID, err)
	}
	if ans.Serial != NormalizeSerial(before.Serial) || ans.Reloads != 0 {
		return fmt.Errorf("%s's daemon serves serial %s after %d reloads; the rejected bundle must change nothing", n.ID, short(ans.Serial), ans.Reloads)
	}
	d.ok("%s's certificate, key and CA dropped into %s's inbox (as a mistaken scp would): rejected %s later,\n"+
		"with the reason in the agent's log, in `certkeeper status` and in a reason file beside the files:\n"+
		"  %s\n"+
		"%s's live bundle and its daemon still have serial %s; no reload",
		other.ID, n.ID, took.Round(10*time.Millisecond), reason, n.ID, short(ans.Serial))
	return nil
}

// timerEvent is what the admin host's timer did, for the narration.
type timerEvent struct {
	err  error
	text string
}

// adminTimer is the admin host's certkeeper-ca-renew timer, every second:
// `ca renew --within 40%`, then a push of what it re-issued for node1.
func (d *run) adminTimer(ctx context.Context) {
	say := func(e timerEvent) {
		select {
		case d.timer <- e:
		case <-ctx.Done():
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a, err := authority.Load(d.caDir, authority.Options{})
		if err != nil {
			say(timerEvent{err: fmt.Errorf("the admin host's timer: %w", err)})
			continue
		}
		res, err := a.Renew(ctx, authority.RenewOptions{Within: authority.DefaultWindow})
		if err != nil {
			if ctx.Err() == nil {
				say(timerEvent{err: fmt.Errorf("the admin host's timer: ca renew: %w", err)})
			}
			continue
		}
		if err := res.Err(); err != nil {
			say(timerEvent{err: fmt.Errorf("the admin host's timer: ca renew: %w", err)})
		}
		if len(res.Issued) == 0 {
			continue
		}
		var ids []string
		for _, is := range res.Issued {
			ids = append(ids, is.ID)
		}
		sort.Strings(ids)
		text := textf("the admin host's timer: certkeeper ca renew --within 40%%: re-issued %s (a new key each)\n"+
			"into %s/nodes/<id>/", strings.Join(ids, ", "), d.rel(d.caDir))
		for _, s := range res.Skipped {
			text += textf("; %s skipped: %s", s.ID, s.Reason)
		}
		say(timerEvent{text: text})
		for _, n := range d.nodes {
			if n.RenewsBy == "push" && contains(ids, n.ID) {
				inv, err := distribute.LoadInventory(d.inventory)
				if err != nil {
					say(timerEvent{err: err})
					continue
				}
				nodes, err := inv.Select([]string{n.ID})
				if err != nil {
					say(timerEvent{err: err})
					continue
				}
				r := distribute.Push(ctx, nodes, distribute.PushOptions{CADir: d.caDir})[0]
				if r.Err != nil {
					say(timerEvent{err: fmt.Errorf("the admin host's timer: push to %s: %w", n.ID, r.Err)})
					continue
				}
				say(timerEvent{text: textf("the admin host's timer: certkeeper push: %s: wrote %s into %s (%s)",
					n.ID, strings.Join(r.Files, ", "), nodes[0].Dir, r.Took.Round(time.Millisecond))})
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// renewals runs the admin host's timer and watches every node renew once:
// a new serial in the agent's state, then in what its daemon serves, with
// exactly one reload of the daemon per new certificate.
func (d *run) renewals(ctx context.Context) error {
	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.adminTimer(tctx) }()
	defer func() { stop(); wg.Wait() }()

	var deadline time.Time
	for _, n := range d.nodes {
		if n.firstExpiry.After(deadline) {
			deadline = n.firstExpiry
		}
	}
	// A renewal after expiry would be a failure even if it came.
	deadline = deadline.Add(2 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		rows := d.rows(ctx)
		done := d.drain(rows)
		d.r.Status(rows, time.Now(), done)
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			for _, n := range d.nodes {
				if !n.renewed {
					d.fail(fmt.Errorf("%s did not renew before its first certificate expired (%s); see %s", n.ID, n.firstExpiry.Format(time.TimeOnly), n.agent.Log))
				}
			}
			d.r.Status(rows, time.Now(), true)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// drain reports what happened since the last look: the timer's runs, the
// forced command's, and each node's renewal once its daemon serves the
// new certificate. It reports whether every node has renewed.
func (d *run) drain(rows []Row) bool {
	for more := true; more; {
		select {
		case e := <-d.timer:
			if e.err != nil {
				d.fail(e.err)
			} else {
				d.ok("%s", e.text)
			}
		case e := <-d.signs:
			if e.Status != 0 {
				d.fail(fmt.Errorf("the admin host's forced command `certkeeper ca sign --node %s` refused %s's request (exit %d): %s", e.Node, e.Node, e.Status, strings.TrimSpace(e.Stderr)))
			} else {
				d.ok("admin host: %s's key logged in as certkeeper-ca and asked to run %q; sshd ran the key's\n"+
					"forced command, certkeeper ca sign --dir %s --node %s, which checked the request and signed it", e.Node, e.Asked, d.rel(d.caDir), e.Node)
			}
		default:
			more = false
		}
	}
	all := true
	for i, n := range d.nodes {
		r := rows[i]
		if !n.renewed && r.Serial != "" && r.Serial != n.first && r.DaemonSerial == r.Serial {
			n.renewed = true
			st := d.state(n)
			how := d.detail(st.LastInstall)
			if r.Reloads != r.Installs-1 || uint64(r.DaemonReloads) != r.Reloads {
				d.fail(fmt.Errorf("%s renewed (serial %s → %s) but reloaded %d times for %d new certificates (the daemon counts %d): want one reload per change",
					n.ID, short(n.first), short(r.Serial), r.Reloads, r.Installs-1, r.DaemonReloads))
			} else {
				d.ok("%s renewed by %s: serial %s → %s; its daemon reloaded once and serves %s\n%s",
					n.ID, n.RenewsBy, short(n.first), short(r.Serial), short(r.DaemonSerial), how)
			}
		}
		all = all && n.renewed
	}
	return all
}

// rows reads every started node's state and asks its daemon what it
// serves.
func (d *run) rows(ctx context.Context) []Row {
	var out []Row
	for _, n := range d.nodes {
		r := Row{Node: n.ID, Layout: n.Layout, RenewsBy: n.RenewsBy}
		if n.cfg != nil {
			st := d.state(n)
			r.Serial, r.NotAfter, r.RenewAt = NormalizeSerial(st.Serial), st.NotAfter, st.RenewAt
			r.Installs, r.Reloads = st.Counters.Installs, st.Counters.Reloads
		}
		if n.daemonAddr != "" {
			ans, err := probe(ctx, n.daemonAddr, d.client, d.roots)
			if err != nil {
				r.DaemonErr = err.Error()
			}
			r.DaemonSerial, r.DaemonReloads = ans.Serial, ans.Reloads
		}
		out = append(out, r)
	}
	return out
}

// cleanup stops everything the demo started, each with a bounded wait,
// and removes its directory unless asked to keep it.
func (d *run) cleanup() {
	d.r.Section("Clean-up")
	var agents, daemons []string
	var problems []error
	for _, n := range d.nodes {
		if n.agent != nil {
			if err := n.agent.Stop(10 * time.Second); err != nil {
				problems = append(problems, fmt.Errorf("%s's agent did not stop cleanly on SIGTERM: %w; its log: %s", n.ID, err, tail(n.agent.Log)))
			}
			agents = append(agents, fmt.Sprint(n.agent.Pid()))
		}
	}
	for _, n := range d.nodes {
		if n.daemon != nil {
			if err := n.daemon.Stop(5 * time.Second); err != nil {
				problems = append(problems, fmt.Errorf("%s's daemon did not stop cleanly on SIGTERM: %w", n.ID, err))
			}
			daemons = append(daemons, fmt.Sprint(n.daemon.Pid()))
		}
	}
	servers := 0
	for _, s := range []*sshServer{d.admin, d.nodeSSH} {
		if s != nil {
			servers++
			if err := s.Close(); err != nil {
				problems = append(problems, fmt.Errorf("an SSH server on %s did not close within 10s", s.Addr))
			}
		}
	}
	for _, err := range problems {
		d.fail(err)
	}
	if len(problems) == 0 {
		d.ok("stopped %d agents (pids %s), %d daemons (pids %s) and %d SSH servers; each agent exited 0 on SIGTERM",
			len(agents), orNone(agents), len(daemons), orNone(daemons), servers)
	}
	if d.o.Keep {
		d.notef("Kept %s to look at: the CA in admin/ca, each node's config in nodeN/etc/certkeeper,\n"+
			"its live files, its agent's and daemon's logs in nodeN/var/log. Try:\n"+
			"  certkeeper status --config %s\n"+
			"  certkeeper ca list --dir %s", d.dir, d.nodes[0].Config, d.caDir)
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.fail(fmt.Errorf("remove the demo's directory %s: %w", d.dir, err))
		return
	}
	d.ok("removed %s", d.dir)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// waitFor polls cond every 50 ms until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail is the end of a log file, for a failure's report.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return path + " (unreadable)"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return path + ":\n    " + strings.Join(lines, "\n    ")
}
