package platform

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/systemd"
)

// Only Windows needs to be told it runs under a service manager.
func TestAgentArgs(t *testing.T) {
	for goos, want := range map[string]string{
		"linux":   "agent --config /etc/certkeeper/certkeeper.toml",
		"darwin":  "agent --config /etc/certkeeper/certkeeper.toml",
		"windows": "agent --config /etc/certkeeper/certkeeper.toml --service",
	} {
		if got := strings.Join(AgentArgs(goos, "/etc/certkeeper/certkeeper.toml"), " "); got != want {
			t.Errorf("%s: %q, want %q", goos, got, want)
		}
	}
}

func TestOnlySupportedServiceManagers(t *testing.T) {
	for _, ok := range []string{"linux-systemd", "windows-service", "darwin-launchd"} {
		if err := CheckServiceSystem(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"unix-systemv", "linux-upstart", "linux-openrc", ""} {
		err := CheckServiceSystem(bad)
		if !errors.Is(err, ErrNoServiceManager) || !strings.Contains(err.Error(), "certkeeper agent --config") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestKardianosConfigPerSystem(t *testing.T) {
	spec := ServiceSpec{Name: "certkeeper", Executable: "/usr/bin/certkeeper", Config: "/etc/certkeeper/certkeeper.toml", Install: true}
	c, err := spec.kardianosConfig("linux")
	if err != nil {
		t.Fatal(err)
	}
	unit, _ := c.Option["SystemdScript"].(string)
	if !strings.Contains(unit, "\nType=notify\n") || !strings.Contains(unit, "\nExecStart=/usr/bin/certkeeper agent --config /etc/certkeeper/certkeeper.toml\n") {
		t.Errorf("systemd: the hardened unit is not the script:\n%s", unit)
	}
	if unit != systemd.Agent {
		t.Errorf("for the packaged paths, the installed unit differs from systemd/certkeeper.service")
	}

	win := spec
	win.Executable, win.Config = `C:\Program Files\certkeeper\certkeeper.exe`, `C:\ProgramData\certkeeper\certkeeper.toml`
	c, err = win.kardianosConfig("windows")
	if err != nil {
		t.Fatal(err)
	}
	if c.Option["OnFailure"] != "restart" || c.Option["StartType"] != "automatic" || c.Option["OnFailureResetPeriod"] != 86400 {
		t.Errorf("windows: recovery options %v", c.Option)
	}
	if !slices.Equal(c.Arguments, []string{"agent", "--config", win.Config, "--service"}) {
		t.Errorf("windows: arguments %q", c.Arguments)
	}
	if _, err := spec.kardianosConfig("windows"); err == nil {
		t.Error("windows accepted a Unix path as the executable")
	}

	c, err = spec.kardianosConfig("darwin")
	if err != nil || c.Option["KeepAlive"] != true || c.Option["RunAtLoad"] != true {
		t.Errorf("darwin: %v %v", c, err)
	}
	for _, bad := range []ServiceSpec{
		{Name: "certkeeper", Executable: "certkeeper", Config: "/etc/certkeeper/certkeeper.toml"},
		{Name: "certkeeper", Executable: "/usr/bin/certkeeper", Config: "certkeeper.toml"},
		{Name: "certkeeper", Executable: "/usr/bin/certkeeper", Config: "/etc/x\n.toml"},
		{Executable: "/usr/bin/certkeeper", Config: "/etc/certkeeper/certkeeper.toml"},
	} {
		if _, err := bad.kardianosConfig("linux"); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestRenderSystemdUnit(t *testing.T) {
	testenv.NeedUnixPaths(t)
	args := AgentArgs("linux", "/etc/my cluster/100%.toml")
	unit, err := RenderSystemdUnit(systemd.Agent, "/opt/certkeeper/bin/certkeeper", args,
		[]string{"/var/lib/certkeeper", "/var/lib/certkeeper/inbox/flocker", "/etc/flocker", "/srv/app/tls", "/srv/app/tls/", "/etc/mesos/pki"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=/opt/certkeeper/bin/certkeeper agent --config \"/etc/my cluster/100%%.toml\"\n",
		"\nReadWritePaths=-/srv/app/tls\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("missing %q in\n%s", want, unit)
		}
	}
	// Directories the unit already opens are not repeated.
	if strings.Count(unit, "/var/lib/certkeeper") != strings.Count(systemd.Agent, "/var/lib/certkeeper") || strings.Count(unit, "/etc/flocker") != strings.Count(systemd.Agent, "/etc/flocker") {
		t.Errorf("a covered directory was added again:\n%s", unit)
	}

	for _, c := range []struct {
		exe, config string
		writable    []string
		want        string
	}{
		{"/root/certkeeper", "/etc/certkeeper/certkeeper.toml", nil, "ProtectHome"},
		{"/usr/bin/certkeeper", "/home/admin/certkeeper.toml", nil, "ProtectHome"},
		{"/usr/bin/certkeeper", "/tmp/c.toml", nil, "PrivateTmp"},
		{"/usr/bin/certkeeper", "/etc/certkeeper/certkeeper.toml", []string{"/var/tmp/inbox"}, "PrivateTmp"},
		{"/usr/bin/certkeeper", "/etc/{{x}}/c.toml", nil, "{{"},
	} {
		_, err := RenderSystemdUnit(systemd.Agent, c.exe, AgentArgs("linux", c.config), c.writable)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %v: got %v, want an error about %s", c.exe, c.config, c.writable, err, c.want)
		}
	}
}

// What `service install` writes passes systemd's own checks.
func TestRenderedUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, why := hiddenBySandbox(exe); why != "" {
		// Test binaries live in /tmp; give the unit one that does not.
		exe = "/bin/true"
	}
	unit, err := RenderSystemdUnit(systemd.Agent, exe, AgentArgs("linux", "/etc/certkeeper/certkeeper.toml"), []string{"/srv/app/tls"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "certkeeper.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/certkeeper": "/usr/bin/certkeeper",
		"/a b":                `"/a b"`,
		`/a"b`:                `"/a\"b"`,
		`/a\b`:                `"/a\\b"`,
		"/50%":                "/50%%",
		"/$HOME":              "/$$HOME",
		"/a;b":                `"/a;b"`,
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPackagedUnitIsFound(t *testing.T) {
	usr, lib := t.TempDir(), t.TempDir()
	if p := packagedUnit([]string{usr, lib}, "certkeeper"); p != "" {
		t.Errorf("found %s in empty directories", p)
	}
	os.WriteFile(filepath.Join(lib, "certkeeper.service"), []byte("[Unit]\n"), 0o644)
	if p := packagedUnit([]string{usr, lib}, "certkeeper"); p != filepath.Join(lib, "certkeeper.service") {
		t.Errorf("got %q", p)
	}
}

func TestWindowsDirs(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/flocker":        `C:\ProgramData\certkeeper\flocker`,
		"/etc/mesos/pki":      `C:\ProgramData\certkeeper\mesos\pki`,
		"/var/lib/certkeeper": `C:\ProgramData\certkeeper\state`,
		"/etc/certkeeper":     `C:\ProgramData\certkeeper`,
		`D:\tls`:              `D:\tls`,
		"/srv/x":              "/srv/x",
	} {
		if got := WindowsDir(`C:\ProgramData\`, in); got != want {
			t.Errorf("WindowsDir(%q) = %q, want %q", in, got, want)
		}
	}
}

// The agent runs until the service manager stops it; stopping waits for
// it to finish.
func TestAgentProgramStartStop(t *testing.T) {
	var finished atomic.Bool
	p := newAgentProgram(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		finished.Store(true)
		return nil
	})
	p.exit = func(code int) { t.Errorf("exit(%d) on a requested stop", code) }
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Error("Stop returned before the agent finished")
	}
}

// An agent that fails on its own exits 1, so that the Windows service
// manager's recovery actions restart it.
func TestAgentProgramFailureExits(t *testing.T) {
	exited := make(chan int, 1)
	p := newAgentProgram(context.Background(), func(context.Context) error { return errors.New("config broke") })
	p.exit = func(code int) { exited <- code }
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit(%d), want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed agent did not exit")
	}
}

// Returning without being asked to stop is a failure too.
func TestAgentProgramReturningUnaskedExits(t *testing.T) {
	exited := make(chan int, 1)
	p := newAgentProgram(context.Background(), func(context.Context) error { return nil })
	p.exit = func(code int) { exited <- code }
	p.Start(nil)
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit(%d), want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an agent that returned did not exit")
	}
}

func TestRunAsServiceOutsideWindowsRunsTheAgent(t *testing.T) {
	testenv.NeedUnix(t, "RunAsService to run the agent in the foreground (on Windows it serves the service manager)")
	want := errors.New("done")
	if err := RunAsService(context.Background(), ServiceName, func(context.Context) error { return want }); !errors.Is(err, want) {
		t.Errorf("got %v", err)
	}
}

// What `service status` says for each state systemd reports: a crash loop
// and a failed unit are not running, a reload is.
func TestSystemdStatus(t *testing.T) {
	for _, tc := range []struct {
		load, active, sub string
		want              ServiceStatus
	}{
		{"loaded", "active", "running", ServiceRunning},
		{"loaded", "reloading", "reload", ServiceRunning},
		{"loaded", "activating", "start", ServiceRunning},
		{"loaded", "activating", "auto-restart", ServiceStopped},
		{"loaded", "deactivating", "stop-sigterm", ServiceStopped},
		{"loaded", "failed", "failed", ServiceStopped},
		{"loaded", "inactive", "dead", ServiceStopped},
		{"not-found", "inactive", "dead", ServiceNotInstalled},
	} {
		show := "LoadState=" + tc.load + "\nActiveState=" + tc.active + "\nSubState=" + tc.sub + "\n"
		if got := systemdStatus(show); got != tc.want {
			t.Errorf("%s/%s/%s: %s, want %s", tc.load, tc.active, tc.sub, got, tc.want)
		}
	}
}
