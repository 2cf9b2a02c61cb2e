//go:build linux

package doctest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// TestMain makes the test binary the machines' systemctl and journalctl
// stand-ins when it is called by those names.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "systemctl":
		os.Exit(SystemctlMain(os.Args[1:], os.Stdout, os.Stderr))
	case "journalctl":
		os.Exit(JournalctlMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// A scenario is a set of guides followed in order on one fresh cluster.
type scenario struct {
	name  string
	docs  []string // under docs/
	fresh bool     // the guides install certkeeper themselves
	// extra machines the guides reach only over SSH from another.
	extra []string
	// units are stand-ins for the cluster's own daemons, per machine.
	units map[string][]string
	// realUnits are unit files, by machine and name, that run the real
	// daemon from its Debian package where the package's own unit needs
	// what the stand-in systemctl lacks (nginx's Type=forking).
	realUnits map[string]map[string]string
	// check looks at the machines afterwards, beyond what the guides'
	// own commands check.
	check func(t *testing.T, c *Cluster)
}

var scenarios = []scenario{
	{
		name: "admin host and node", docs: []string{"admin-host.md", "node.md"}, fresh: true, extra: []string{"node2"},
		units: map[string][]string{"node1": {"flocker-dataset-agent.service"}},
		check: func(t *testing.T, c *Cluster) {
			n := c.Machines["node1"]
			wantMode(t, c, n, "/etc/flocker", 0o700)
			wantMode(t, c, n, "/etc/flocker/node.key", 0o600)
			wantMode(t, c, n, "/etc/flocker/node.crt", 0o644)
			// CSR mode: the pending keys' directory is the agent's own,
			// and empty once the renewed key is live.
			wantMode(t, c, n, "/var/lib/certkeeper/csr", 0o700)
			// One reload per change: the first pull, the push, the
			// hand-copied bundle, the rollback, the CSR renewal; none for
			// the identical pull.
			wantReloads(t, c, n, "flocker-dataset-agent.service", 5)
		},
	},
	{
		name: "flocker", docs: []string{"guides/flocker.md"},
		units: map[string][]string{
			"control": {"flocker-control.service"},
			"node1":   {"flocker-dataset-agent.service", "flocker-container-agent.service"},
		},
		check: func(t *testing.T, c *Cluster) {
			wantMode(t, c, c.Machines["control"], "/etc/flocker/control-service.key", 0o600)
			wantMode(t, c, c.Machines["node1"], "/etc/flocker/node.key", 0o600)
			// The push, then the CSR renewal: one reload each.
			wantReloads(t, c, c.Machines["control"], "flocker-control.service", 2)
			wantReloads(t, c, c.Machines["node1"], "flocker-dataset-agent.service", 2)
			wantReloads(t, c, c.Machines["node1"], "flocker-container-agent.service", 2)
		},
	},
	{
		name: "mesos", docs: []string{"guides/mesos.md"},
		units: map[string][]string{"master": {"mesos-master.service!"}, "agent1": {"mesos-agent.service!"}},
		check: func(t *testing.T, c *Cluster) {
			wantMode(t, c, c.Machines["agent1"], "/etc/mesos/pki/localhost-key.pem", 0o600)
			env := c.ReadFile(c.Machines["agent1"], "/etc/mesos/pki/mesos-ssl.env")
			if !strings.Contains(env, "LIBPROCESS_SSL_KEY_FILE=/etc/mesos/pki/localhost-key.pem") {
				t.Errorf("mesos-ssl.env: %s", env)
			}
			// Started with the machine; restarted by the guide's systemctl
			// restart (the drop-in), by the first install and by the
			// re-issued certificate: once per change.
			wantStarts(t, c, c.Machines["agent1"], "mesos-agent.service", 4)
			wantStarts(t, c, c.Machines["master"], "mesos-master.service", 2)
		},
	},
	{
		name: "glow", docs: []string{"guides/glow.md"},
		units: map[string][]string{"master": {"glow-master.service!"}, "agent1": {"glow-agent.service!"}},
		check: func(t *testing.T, c *Cluster) {
			wantMode(t, c, c.Machines["agent1"], "/etc/glow/ssl/localhost.key", 0o600)
			// Started with the machine, restarted once for the install.
			wantStarts(t, c, c.Machines["master"], "glow-master.service", 2)
			wantStarts(t, c, c.Machines["agent1"], "glow-agent.service", 2)
		},
	},
	{
		name: "clusterio", docs: []string{"guides/clusterio.md"},
		units: map[string][]string{"controller": {"clusterio-controller.service!"}, "host1": {"clusterio-host.service!"}},
		check: func(t *testing.T, c *Cluster) {
			wantMode(t, c, c.Machines["controller"], "/etc/clusterio/key.pem", 0o600)
			wantMode(t, c, c.Machines["host1"], "/etc/clusterio/cert.pem", 0o644)
			// Started with the machine, then once per change: the
			// self-signed pair and the certificate from the CA on the
			// controller; the self-signed certificate, both, the CA
			// alone on the host.
			wantStarts(t, c, c.Machines["controller"], "clusterio-controller.service", 3)
			wantStarts(t, c, c.Machines["host1"], "clusterio-host.service", 4)
		},
	},
	{
		name: "nginx", docs: []string{"guides/nginx.md"},
		realUnits: map[string]map[string]string{"web1": {"nginx.service": nginxUnit}},
		check: func(t *testing.T, c *Cluster) {
			web1 := c.Machines["web1"]
			wantMode(t, c, web1, "/etc/nginx/tls", 0o700)
			wantMode(t, c, web1, "/etc/nginx/tls/web1.key", 0o600)
			// The real nginx's SIGHUPs: the agent's first install, the
			// guide's own reload after writing mtls.conf, the renewal;
			// none for the same files pushed again.
			data, _ := os.ReadFile(c.Path(web1, filepath.Join(StateDir, "nginx.service.log")))
			if got := strings.Count(string(data), "(SIGHUP) received"); got != 3 {
				t.Errorf("web1: nginx got %d SIGHUPs, want 3 (one per change, plus the guide's)", got)
			}
		},
	},
	{
		// Debian's own mosquitto.service runs the real broker.
		name: "mosquitto", docs: []string{"guides/mosquitto.md"},
		check: func(t *testing.T, c *Cluster) {
			b := c.Machines["broker1"]
			wantMode(t, c, b, "/etc/mosquitto/certs", 0o750)
			wantMode(t, c, b, "/etc/mosquitto/certs/broker1.key", 0o440)
			// Started by the agent's first install (reload-or-restart of
			// a stopped unit), restarted by the guide, then one reload:
			// the renewal; none for the modes changed in the config.
			data, _ := os.ReadFile(c.Path(b, "/var/log/mosquitto/mosquitto.log"))
			if got := strings.Count(string(data), "Reloading config"); got != 1 {
				t.Errorf("broker1: mosquitto reloaded %d times, want 1:\n%s", got, data)
			}
		},
	},
	{
		name: "etcd", docs: []string{"guides/etcd.md"},
		realUnits: map[string]map[string]string{"etcd1": {"etcd.service": etcdUnit}, "etcd2": {"etcd.service": etcdUnit}, "etcd3": {"etcd.service": etcdUnit}},
		check: func(t *testing.T, c *Cluster) {
			for _, n := range []string{"etcd1", "etcd2", "etcd3"} {
				m := c.Machines[n]
				wantMode(t, c, m, "/etc/etcd/pki", 0o750)
				wantMode(t, c, m, "/etc/etcd/pki/member.key", 0o640)
				// Started once by the guide; the renewal restarts nothing.
				data, _ := os.ReadFile(c.Path(m, filepath.Join(StateDir, "standin.log")))
				if got := strings.Count(string(data), "etcd.service: started"); got != 1 {
					t.Errorf("%s: etcd was started %d times, want 1 (a renewal needs no restart)", n, got)
				}
			}
		},
	},
	{
		name: "reign", docs: []string{"guides/reign.md"},
		units: map[string][]string{"node1": {"reign-app.service"}, "node2": {"reign-app.service"}},
		check: func(t *testing.T, c *Cluster) {
			wantMode(t, c, c.Machines["node1"], "/etc/reign/node.1.key", 0o600)
			wantMode(t, c, c.Machines["node2"], "/etc/reign/node.2.key", 0o600)
			// The CRL copied next to the bundle stays, and the bundle is
			// still intact.
			wantMode(t, c, c.Machines["node1"], "/etc/reign/signing.crl", 0o644)
			if out, err := c.Exec(context.Background(), c.Machines["node1"], "certkeeper check --config /etc/certkeeper/certkeeper.toml", ""); err != nil {
				t.Errorf("node1: check after the CRL was copied: %v\n%s", err, out)
			}
		},
	},
}

// nginxUnit runs Debian's real nginx in the foreground (the stand-in
// systemctl has no Type=forking), its error log also on stderr at notice
// level, so the unit's log counts its reloads.
const nginxUnit = `# Debian's nginx.service, in the foreground for the doc test's systemctl.
[Unit]
Description=nginx (real, from Debian's package)
[Service]
ExecStartPre=/usr/sbin/nginx -t -q
ExecStart=/usr/sbin/nginx -g "daemon off; master_process on; error_log stderr notice;"
ExecReload=/bin/kill -HUP $MAINPID
`

// etcdUnit is Debian's etcd.service as the stand-in systemctl can run it:
// the real etcd as the user etcd, Type=notify, configured by
// /etc/default/etcd (not started before the bundle is installed). One
// difference: the doc test's machines share one loopback network, where
// every connection comes from 127.0.0.1, so etcd's check that a peer
// connects from an address its certificate names cannot pass there; real
// machines have their own addresses.
const etcdUnit = `# Debian's etcd.service, for the doc test's systemctl.
[Unit]
Description=etcd (real, from Debian's package)
ConditionPathExists=/etc/etcd/pki/member.crt
[Service]
Environment=ETCD_DATA_DIR=/var/lib/etcd/default
EnvironmentFile=-/etc/default/etcd
Type=notify
User=etcd
ExecStart=/usr/bin/etcd --experimental-peer-skip-client-san-verification
`

// standinUnit is a daemon that notes each start and each reload (SIGHUP)
// in its output, so a test can count them: what the cluster's real daemon
// would be. A name ending in "!" has no ExecReload (Mesos, Glow and
// Clusterio read their certificates only at start), so reload-or-restart
// restarts it.
func standinUnit(name string) string {
	reload := "ExecReload=/bin/kill -HUP $MAINPID\n"
	if strings.HasSuffix(name, "!") {
		reload = ""
	}
	name = strings.TrimSuffix(name, "!")
	return fmt.Sprintf(`# A stand-in for %s, installed by the doc test: it counts starts and reloads.
[Unit]
Description=doc test stand-in for %s
[Service]
ExecStart=/bin/sh -c 'echo started; trap "echo reloaded" HUP; while :; do sleep 1 & wait $!; done'
%s`, name, name, reload)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// packages builds the .deb once, as admin-host.md does, for the machines
// of guides that start with certkeeper installed.
func packages(t *testing.T) (dist, deb string) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "certkeeper-doctest-dist-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("./packaging/build.sh")
		cmd.Dir = repo()
		cmd.Env = append(os.Environ(), "DIST="+buildDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("packaging/build.sh: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	debs, _ := filepath.Glob(filepath.Join(buildDir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one .deb in %s, have %v", buildDir, debs)
	}
	return buildDir, debs[0]
}

// TestGuides follows every guide in docs/ step by step on simulated
// machines (see the package comment and docs/README.md).
func TestGuides(t *testing.T) {
	if testing.Short() {
		t.Skip("the guides take tens of seconds; scripts/test runs them without -short")
	}
	Require(t)
	t.Cleanup(func() {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	})
	shim, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The guides write these on their machines; none may appear on the
	// machine running the test.
	var absent []string
	for _, p := range []string{"/etc/flocker", "/etc/mesos", "/etc/glow", "/etc/clusterio", "/etc/reign", "/etc/nginx/tls", "/etc/nginx/conf.d/mtls.conf", "/etc/mosquitto/certs/broker1.key", "/etc/etcd",
		"/srv/certkeeper", "/etc/ssh/certkeeper", "/etc/ssh/sshd_config.d/certkeeper.conf", "/media/offline", "/root/certkeeper"} {
		if _, err := os.Lstat(p); err != nil {
			absent = append(absent, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range absent {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s appeared on the machine running the test: a guide's write escaped its simulated machine", p)
			}
		}
	})
	for _, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			// Each scenario has its own network and machines; they mostly
			// wait (on sshd, on the agents' settle time), so they overlap.
			t.Parallel()
			var steps []Step
			for _, d := range sc.docs {
				s, err := LoadSteps(filepath.Join(repo(), "docs", d), "docs/"+d)
				if err != nil {
					t.Fatal(err)
				}
				steps = append(steps, s...)
			}
			dist, deb := packages(t)
			o := ClusterOptions{Machines: append(StepMachines(steps), sc.extra...), Repo: repo(), Dist: dist, Shim: shim, Units: map[string]map[string]string{}}
			if !sc.fresh {
				o.Deb = deb
			}
			for m, units := range sc.units {
				o.Units[m] = map[string]string{}
				for _, u := range units {
					o.Units[m][strings.TrimSuffix(u, "!")] = standinUnit(u)
				}
			}
			for m, units := range sc.realUnits {
				if o.Units[m] == nil {
					o.Units[m] = map[string]string{}
				}
				for name, content := range units {
					o.Units[m][name] = content
				}
			}
			c := StartCluster(t, o)
			sum := c.RunSteps(t, steps)
			t.Logf("%s: ran %d blocks, wrote %d files, %d examples shown only, %d skipped, %d systemctl stand-ins",
				strings.Join(sc.docs, " + "), sum.Ran, sum.Wrote, sum.Examples, len(sum.Skipped), sum.Standins)
			for _, s := range sum.Skipped {
				t.Logf("skipped %s", s)
			}
			// No log of any unit the stand-in ran (the agents, the CA's
			// timer, the daemons) holds a private key.
			for _, m := range c.Machines {
				logs, _ := filepath.Glob(c.Path(m, filepath.Join(StateDir, "*.log")))
				for _, l := range logs {
					if data, _ := os.ReadFile(l); strings.Contains(string(data), PrivateKeyMarker) {
						t.Errorf("%s: %s holds a private key (invariant 3: keys are never logged)", m.Name, filepath.Base(l))
					}
				}
			}
			if sc.check != nil {
				sc.check(t, c)
			}
		})
	}
}

// TestEveryGuideIsFollowed: each guide in docs/guides, node.md and
// admin-host.md belongs to a scenario, so a new guide can not go untested.
func TestEveryGuideIsFollowed(t *testing.T) {
	run := map[string]bool{}
	for _, sc := range scenarios {
		for _, d := range sc.docs {
			run[d] = true
		}
	}
	guides, _ := filepath.Glob(filepath.Join(repo(), "docs", "guides", "*.md"))
	want := []string{"node.md", "admin-host.md"}
	for _, g := range guides {
		want = append(want, "guides/"+filepath.Base(g))
	}
	sort.Strings(want)
	for _, w := range want {
		if !run[w] {
			t.Errorf("docs/%s is not followed by TestGuides: add it to a scenario", w)
		}
	}
	for d := range run {
		if _, err := os.Stat(filepath.Join(repo(), "docs", d)); err != nil {
			t.Errorf("scenario doc %s: %v", d, err)
		}
	}
}

func wantMode(t *testing.T, c *Cluster, m *Machine, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(c.Path(m, path))
	if err != nil {
		t.Errorf("%s: %v", m.Name, err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: %s has mode %04o, want %04o", m.Name, path, fi.Mode().Perm(), mode)
	}
}

// wantStarts counts the stand-in daemon's starts: the first one, then one
// per restart.
func wantStarts(t *testing.T, c *Cluster, m *Machine, unit string, n int) {
	t.Helper()
	data, _ := os.ReadFile(c.Path(m, filepath.Join(StateDir, unit+".log")))
	if got := strings.Count(string(data), "started\n"); got != n {
		t.Errorf("%s: %s was started %d times, want %d", m.Name, unit, got, n)
	}
}

// wantReloads counts the stand-in daemon's reloads.
func wantReloads(t *testing.T, c *Cluster, m *Machine, unit string, n int) {
	t.Helper()
	data, _ := os.ReadFile(c.Path(m, filepath.Join(StateDir, unit+".log")))
	if got := strings.Count(string(data), "reloaded\n"); got != n {
		t.Errorf("%s: %s was reloaded %d times, want %d (one per change)", m.Name, unit, got, n)
	}
}
