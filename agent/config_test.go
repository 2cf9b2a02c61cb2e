package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/pki"
)

// The example from DESIGN.md, as an admin would copy it.
const designExample = `node_id   = "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a"
state_dir = "/var/lib/certkeeper"

[source]                       # the admin host; optional
address       = "admin.example.com:22"
user          = "node-8eab"
identity_file = "/etc/certkeeper/id_ed25519"
known_hosts   = "/etc/certkeeper/known_hosts"

[[bundle]]
name         = "flocker"
layout       = "flocker-node"  # a preset; every field of it can be overridden
dir          = "/etc/flocker"
inbox        = "/var/lib/certkeeper/inbox/flocker"   # where pushed or hand-copied files land; this is the default
remote_dir   = "nodes/8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a"
renew_before = "720h"          # or renew_at = 0.66 of the lifetime
mode         = "pull"          # or "csr": the key is made on the node and never travels

  [[bundle.reload]]
  systemd = "flocker-dataset-agent.service"   # reload-or-restart

  [[bundle.reload]]
  signal  = "HUP"                             # or a signal to a pid file's process
  pidfile = "/run/glow.pid"

  [[bundle.reload]]
  command = ["/usr/local/bin/mesos-reload", "--graceful"]   # an argument array; no shell unless shell = true
`

func TestDesignExampleLoads(t *testing.T) {
	testenv.NeedUnixPaths(t)
	c, err := agent.ParseConfig("certkeeper.toml", []byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bundles[0]
	if b.Resolved.Dir != "/etc/flocker" || b.Resolved.KeyFile != "node.key" || b.RenewBefore.Duration != 720*time.Hour || len(b.Reload) != 3 || b.Mode != "pull" {
		t.Fatalf("decoded %+v", b)
	}
	if c.Source == nil || c.Source.Address != "admin.example.com:22" {
		t.Fatalf("source %+v", c.Source)
	}
}

func TestDefaults(t *testing.T) {
	testenv.NeedUnixPaths(t)
	c, err := agent.ParseConfig("c.toml", []byte("node_id = \"n1\"\n[[bundle]]\nname = \"glow\"\nlayout = \"glow\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bundles[0]
	if c.StateDir != "/var/lib/certkeeper" || b.Inbox != "/var/lib/certkeeper/inbox/glow" || b.Resolved.Dir != "/etc/glow/ssl" ||
		c.RescanInterval.Duration != time.Minute || b.Mode != "pull" || b.NodeID != "n1" {
		t.Fatalf("defaults: %+v %+v", c, b)
	}
}

// A bundle that names its daemon's group may give it the key: 0640 in a
// 0750 directory (mosquitto, PostgreSQL's ssl-cert convention).
func TestGroupReadableKeyConfig(t *testing.T) {
	c, err := agent.ParseConfig("c.toml", []byte("node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\ngroup = \"65534\"\nkey_mode = \"0640\"\ndir_mode = \"0750\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Bundles[0].Resolved; l.KeyMode != 0o640 || l.DirMode != 0o750 || l.Group != "65534" {
		t.Fatalf("resolved %04o %04o %q", l.KeyMode, l.DirMode, l.Group)
	}
}

// usage says what the daemon uses the certificate for; the leaf's key
// usages must allow it. Without it, both ends of mutual TLS.
func TestBundleUsage(t *testing.T) {
	for cfg, want := range map[string]pki.Usage{
		"":                                   pki.UsageBoth,
		"usage = [\"client\"]\n":             pki.UsageClient,
		"usage = [\"server\"]\n":             pki.UsageServer,
		"usage = [\"server\", \"client\"]\n": pki.UsageBoth,
	} {
		c, err := agent.ParseConfig("c.toml", []byte("node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n"+cfg))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Bundles[0].Resolved.NeedUsage(); got != want {
			t.Errorf("%q: usage %v, want %v", cfg, got, want)
		}
	}
}

// A trailing slash (or a "." or "//") in dir or inbox is cleaned away:
// the watcher compares event paths with them, and the checks for bundles
// sharing a directory compare them too.
func TestDirAndInboxAreCleaned(t *testing.T) {
	testenv.NeedUnixPaths(t)
	c, err := agent.ParseConfig("c.toml", []byte("node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\ndir = \"/x//live/\"\ninbox = \"/x/./in/\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Bundles[0]; b.Resolved.Dir != "/x/live" || b.Inbox != "/x/in" {
		t.Fatalf("dir %q inbox %q, want /x/live and /x/in", b.Resolved.Dir, b.Inbox)
	}
}

// Each mistake names its key, and its line where the file has one.
func TestConfigErrors(t *testing.T) {
	testenv.NeedUnixPaths(t)
	base := "node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n"
	cases := []struct {
		name   string
		config string
		want   string
	}{
		{"unknown top key", "node_idd = \"n1\"\n" + base, `c.toml:1: node_idd: unknown key; known keys here: `},
		{"unknown bundle key", base + "renew_befor = \"1h\"\n", `c.toml:5: bundle.renew_befor: unknown key; known keys here: allow_ca_change,`},
		{"unknown reload key", base + "[[bundle.reload]]\nsytemd = \"x.service\"\n", `c.toml:6: bundle.reload.sytemd: unknown key; known keys here: command, only_if_running, pidfile, shell, signal, systemd, timeout`},
		{"key in the wrong case", base + "Layout = \"mesos\"\n", `bundle.Layout: unknown key`},
		{"unknown section", base + "[sourc]\naddress = \"x\"\n", `c.toml:5: sourc: unknown key`},
		{"bad duration", base + "renew_before = \"thirty days\"\n", `c.toml:5: bundle.renew_before: "thirty days" is not a duration`},
		{"bare integer duration", base + "renew_before = 30\n", `c.toml:5: bundle.renew_before: a bare number (30) is not a duration`},
		{"integer mode", base + "key_mode = 600\n", `c.toml:5: bundle.key_mode: write a mode as an octal string`},
		{"bad mode", base + "key_mode = \"rw-------\"\n", `not an octal permission`},
		{"loose key mode", base + "key_mode = \"0644\"\n", `lets other users read the private key`},
		{"unknown usage", base + "usage = [\"peer\"]\n", `c.toml:5: bundle "b": usage: usage "peer" is not one of "server", "client"`},
		{"empty usage", base + "usage = []\n", `bundle "b": usage: an empty list allows nothing`},
		{"group-readable key without a group", base + "key_mode = \"0640\"\ndir_mode = \"0750\"\n", `lets the group read the private key, but the bundle names no group`},
		{"group-readable key in a closed directory", base + "key_mode = \"0640\"\ngroup = \"65534\"\n", `keeps the group out of the directory; set dir_mode = "0750"`},
		{"world-readable key with a group", base + "key_mode = \"0644\"\ndir_mode = \"0750\"\ngroup = \"65534\"\n", `lets other users read the private key`},
		{"others-only readable key with a group", base + "key_mode = \"0604\"\ndir_mode = \"0750\"\ngroup = \"65534\"\n", `lets other users read the private key`},
		{"missing layout", "node_id = \"n1\"\n[[bundle]]\nname = \"b\"\n", `bundle "b": layout: missing: one of clusterio, clusterio-host, custom, flocker-control, flocker-node, glow, mesos, reign`},
		{"unknown layout", "node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"flocker\"\n", `c.toml:4: bundle "b": layout: unknown layout "flocker"`},
		{"missing name", "node_id = \"n1\"\n[[bundle]]\nlayout = \"glow\"\n", `bundle[0].name: missing`},
		{"missing node id", "[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n", `node_id: missing`},
		{"no bundles", "node_id = \"n1\"\n", `no [[bundle]] defined`},
		{"duplicate bundle", base + "[[bundle]]\nname = \"b\"\nlayout = \"mesos\"\n", `bundle "b": name: defined twice`},
		{"same directory", base + "[[bundle]]\nname = \"c\"\nlayout = \"glow\"\n", `/etc/glow/ssl is also bundle "b"'s directory`},
		{"bad mode name", base + "mode = \"push\"\n", `"push" is not one of pull, csr`},
		{"csr without source", base + "mode = \"csr\"\n", `add a [source] section`},
		{"renew_at too big", base + "renew_at = 1.5\n", `between 0 and 1`},
		{"renew both", base + "renew_at = 0.5\nrenew_before = \"1h\"\n", `choose one`},
		{"reload with two mechanisms", base + "[[bundle.reload]]\nsystemd = \"a.service\"\ncommand = [\"x\"]\n", `set only one of`},
		{"signal without pidfile", base + "[[bundle.reload]]\nsignal = \"HUP\"\n", `signal needs a pidfile`},
		{"unknown signal", base + "[[bundle.reload]]\nsignal = \"WINCH\"\npidfile = \"/run/x.pid\"\n", `signal "WINCH" is not one of`},
		{"shell with an array", base + "[[bundle.reload]]\ncommand = [\"a\", \"b\"]\nshell = true\n", `one string for /bin/sh -c`},
		{"source without known_hosts", "node_id = \"n1\"\n[source]\naddress = \"a\"\nuser = \"u\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n", `source.known_hosts: missing`},
		{"syntax error", base + "dir = \"/x\n", `c.toml:5`},
		{"relative inbox", base + "inbox = \"inbox\"\n", `must be an absolute path`},
		{"remote dir escapes", base + "remote_dir = \"../other\"\n", `must not contain ".."`},
		{"unknown owner", base + "owner = \"no-such-user-certkeeper\"\n", `owner "no-such-user-certkeeper"`},
		{"check timeout beyond the watchdog", base + "check_timeout = \"20m\"\n", `bundle "b": check_timeout: 20m0s is too long; at most 10m0s`},
		{"reload timeout beyond the watchdog", base + "[[bundle.reload]]\nsystemd = \"a.service\"\ntimeout = \"1h\"\n", `timeout 1h0m0s is too long; at most 10m0s`},
		{"source timeout beyond the watchdog", "node_id = \"n1\"\n[source]\naddress = \"a\"\nuser = \"u\"\nknown_hosts = \"/k\"\ntimeout = \"5m\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n", `c.toml:6: source.timeout: 5m0s is out of range; at most 3m0s`},
		{"same directory with a trailing slash", base + "dir = \"/x/live\"\n[[bundle]]\nname = \"c\"\nlayout = \"glow\"\ndir = \"/x/live/\"\n", `bundle "c": dir: /x/live is also bundle "b"'s directory`},
		{"shared inbox", base + "inbox = \"/x/in\"\n[[bundle]]\nname = \"c\"\nlayout = \"mesos\"\ninbox = \"/x/in/\"\n", `bundle "c": inbox: /x/in is also bundle "b"'s inbox; each bundle needs its own`},
		{"inbox inside another bundle's live directory", base + "[[bundle]]\nname = \"c\"\nlayout = \"mesos\"\ninbox = \"/etc/glow/ssl/in\"\n", `bundle "c": inbox: /etc/glow/ssl/in is inside bundle "b"'s live directory /etc/glow/ssl`},
		{"inbox inside its own live directory", base + "inbox = \"/etc/glow/ssl/inbox/\"\n", `bundle "b": inbox: /etc/glow/ssl/inbox is inside its own live directory /etc/glow/ssl`},
		{"inbox that is another bundle's live directory", base + "[[bundle]]\nname = \"c\"\nlayout = \"mesos\"\ninbox = \"/etc/glow/ssl\"\n", `bundle "c": inbox: /etc/glow/ssl is bundle "b"'s live directory`},
		{"live directory inside an inbox", base + "inbox = \"/x/in\"\n[[bundle]]\nname = \"c\"\nlayout = \"mesos\"\ndir = \"/x/in/mesos\"\n", `bundle "c": dir: /x/in/mesos is inside bundle "b"'s inbox /x/in`},
		{"live directory inside its own inbox", base + "inbox = \"/x/in\"\ndir = \"/x/in/live\"\n", `bundle "b": dir: /x/in/live is inside its own inbox /x/in`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := agent.ParseConfig("c.toml", []byte(c.config))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ParseConfig = %v\nwant an error containing %q", err, c.want)
			}
			var ce *agent.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *agent.ConfigError", err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := agent.LoadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !os.IsNotExist(errors.Unwrap(err)) && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("LoadConfig(missing) = %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"720h": 720 * time.Hour, "30d": 720 * time.Hour, "1d12h": 36 * time.Hour, "90s": 90 * time.Second} {
		if got, err := agent.ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "30", "d", "1y", "99999999d"} {
		if _, err := agent.ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) accepted", s)
		}
	}
}

// What a sandboxed service must leave writable: the state directory, each
// bundle's directory and inbox, and the metrics textfile's directory,
// each once.
func TestWritableDirs(t *testing.T) {
	testenv.NeedUnixPaths(t)
	c, err := agent.ParseConfig("c.toml", []byte(`node_id = "n1"
state_dir = "/var/lib/certkeeper"
metrics_textfile = "/var/lib/node_exporter/textfile/certkeeper.prom"
[[bundle]]
name = "flocker"
layout = "flocker-node"
[[bundle]]
name = "app"
layout = "custom"
dir = "/srv/app/tls/"
cert_file = "node.crt"
key_file = "node.key"
ca_file = "cluster.crt"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := "/etc/flocker /srv/app/tls /var/lib/certkeeper /var/lib/certkeeper/inbox/app /var/lib/certkeeper/inbox/flocker /var/lib/node_exporter/textfile"
	if got := strings.Join(c.WritableDirs(), " "); got != want {
		t.Errorf("WritableDirs:\n got %s\nwant %s", got, want)
	}
}

// report_heartbeat: 5m by default, taken between 1m and 1h, refused
// outside with the bounds named.
func TestReportHeartbeatKey(t *testing.T) {
	testenv.NeedUnixPaths(t)
	base := "node_id = \"n1\"\n%s[[bundle]]\nname = \"b\"\nlayout = \"glow\"\n"
	for _, c := range []struct {
		line string
		want time.Duration
		err  string
	}{
		{"", agent.DefaultReportHeartbeat, ""},
		{"report_heartbeat = \"1m\"\n", time.Minute, ""},
		{"report_heartbeat = \"1h\"\n", time.Hour, ""},
		{"report_heartbeat = \"20m\"\n", 20 * time.Minute, ""},
		{"report_heartbeat = \"59s\"\n", 0, `c.toml:2: report_heartbeat: 59s is out of range; at least 1m0s, at most 1h0m0s`},
		{"report_heartbeat = \"61m\"\n", 0, `report_heartbeat: 1h1m0s is out of range`},
		{"report_heartbeat = \"-1m\"\n", 0, `report_heartbeat:`},
	} {
		cfg, err := agent.ParseConfig("c.toml", []byte(strings.Replace(base, "%s", c.line, 1)))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil || cfg.ReportHeartbeat.Duration != c.want {
			t.Errorf("%q: %v %v, want %s", c.line, cfg, err, c.want)
		}
	}
}
