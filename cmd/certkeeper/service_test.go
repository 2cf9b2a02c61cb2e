package main

import (
	"os"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testenv"
)

// Where no supported service manager runs (this container: no systemd as
// PID 1), install says so and what to do instead, and changes nothing.
func TestServiceInstallWithoutAServiceManager(t *testing.T) {
	testenv.NeedUnix(t, "a machine without a service manager (Windows always has one)")
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs here; this test is for machines without a service manager")
	}
	n := newNode(t, "flocker-node", "node-1", "")
	r := certkeeper(t, "service", "install", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stderr, "no supported service manager found") || !strings.Contains(r.stderr, "certkeeper agent --config FILE") {
		t.Errorf("install: %+v", r)
	}
	r = certkeeper(t, "service", "status", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stderr, "no supported service manager found") {
		t.Errorf("status: %+v", r)
	}
}

func TestServiceUsage(t *testing.T) {
	for _, args := range [][]string{{"service"}, {"service", "bogus"}, {"service", "start", "stop"}, {"service", "start", "--dry-run"}} {
		if r := certkeeper(t, args...); r.code != 2 || !strings.Contains(r.stderr, "certkeeper service --help") {
			t.Errorf("%q: %+v", args, r)
		}
	}
	r := certkeeper(t, "service", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "systemctl enable --now certkeeper") {
		t.Errorf("--help: %+v", r)
	}
}

// install checks the config before registering anything.
func TestServiceInstallRefusesABadConfig(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "bogus_key = 1\n")
	r := certkeeper(t, "service", "install", "--dry-run", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stderr, "bogus_key: unknown key") {
		t.Errorf("%+v", r)
	}
}

// A config in /tmp would be invisible to the sandboxed unit (PrivateTmp):
// install says so rather than write a unit that fails at start.
func TestServiceInstallRefusesAPathTheSandboxHides(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "")
	if !strings.HasPrefix(n.config, "/tmp/") {
		t.Skipf("temporary files are in %s, not /tmp", n.config)
	}
	r := certkeeper(t, "service", "install", "--dry-run", "--config", n.config)
	if r.code != 1 || !strings.Contains(r.stderr, "PrivateTmp") {
		t.Errorf("%+v", r)
	}
}

// The config the packages install loads with the real loader.
func TestPackagedConfigLoads(t *testing.T) {
	testenv.NeedUnixPaths(t)
	c, err := agent.LoadConfig("../../packaging/certkeeper.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.WritableDirs() {
		if d != "/var/lib/certkeeper" && !strings.HasPrefix(d, "/var/lib/certkeeper/") {
			t.Errorf("the shipped config writes %s, outside certkeeper's state directory", d)
		}
	}
	for _, b := range c.Bundles {
		if len(b.Reload) > 0 {
			t.Errorf("the shipped config reloads something: bundle %s", b.Name)
		}
	}
}

// Every action registers the same program with the service manager, so
// start, stop, restart, status and uninstall pass the same checks as
// install on each system (they once failed: only install named the
// executable).
func TestServiceSpecForEveryAction(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "")
	for _, action := range []string{"install", "uninstall", "start", "stop", "restart", "status"} {
		spec, err := serviceSpec(action, n.config)
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		if spec.Install != (action == "install") || spec.Executable == "" {
			t.Errorf("%s: %+v", action, spec)
		}
		// Where the package puts them: the test's own paths are under
		// /tmp, which install rightly refuses (the unit's PrivateTmp).
		spec.Executable, spec.Config, spec.Writable = "/usr/bin/certkeeper", "/etc/certkeeper/certkeeper.toml", nil
		for _, goos := range []string{"linux", "darwin", "windows"} {
			if goos == "windows" {
				spec.Executable, spec.Config = `C:\Program Files\certkeeper\certkeeper.exe`, `C:\ProgramData\certkeeper\certkeeper.toml`
			}
			if _, err := spec.Preview(goos); err != nil {
				t.Errorf("%s on %s: %v", action, goos, err)
			}
		}
	}
}
