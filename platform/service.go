package platform

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kardianos/service"

	"github.com/certkeeper/certkeeper/systemd"
)

// ServiceName is the name certkeeper registers with the service manager:
// certkeeper.service, the Windows service "certkeeper", launchd's label.
const ServiceName = "certkeeper"

// ServiceFlag is the agent's flag (`certkeeper agent --service`) that
// says a service manager which needs talking to started it: the Windows
// service control manager. `service install` adds it there and nowhere
// else; nothing guesses from the environment whether it runs as a
// service.
const ServiceFlag = "service"

// ServiceSpec is what `certkeeper service install` registers.
type ServiceSpec struct {
	Name string
	// Executable is the absolute path of the certkeeper binary.
	Executable string
	// Config is the absolute path of the agent's config.
	Config string
	// Writable lists the directories the agent writes (the state
	// directory, every bundle's directory and inbox). Under systemd those
	// the unit does not already open up become ReadWritePaths.
	Writable []string
	// Install: the spec registers the service (install, its preview), so
	// the systemd unit is rendered and the paths are checked against its
	// sandbox. The other actions only name the registered service.
	Install bool
}

// AgentArgs are the arguments the service manager starts certkeeper with.
func AgentArgs(goos, config string) []string {
	args := []string{"agent", "--config", config}
	if goos == "windows" {
		args = append(args, "--"+ServiceFlag)
	}
	return args
}

// The service managers certkeeper installs itself into, by kardianos'
// names for them. SysV init, upstart, OpenRC and the rest are left out on
// purpose: the agent's readiness, reload and watchdog are built for these.
var supportedSystems = map[string]string{
	"linux-systemd":   "systemd",
	"windows-service": "the Windows service control manager",
	"darwin-launchd":  "launchd",
}

// ErrNoServiceManager is returned where no supported service manager runs.
var ErrNoServiceManager = errors.New("no supported service manager found")

// CheckServiceSystem accepts kardianos' name of the detected system when
// certkeeper supports it.
func CheckServiceSystem(detected string) error {
	if _, ok := supportedSystems[detected]; ok {
		return nil
	}
	found := "nothing"
	if detected != "" {
		found = detected
	}
	return fmt.Errorf("%w (detected %s): certkeeper installs itself into systemd (running as PID 1), the Windows service control manager or launchd; elsewhere run `certkeeper agent --config FILE` from your init system", ErrNoServiceManager, found)
}

// WindowsRecovery is what the Windows service manager does when the agent
// exits with an error or crashes: restart it, waiting a little longer each
// time, and forget past failures after a day.
var (
	WindowsRecovery      = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}
	WindowsRecoveryReset = 24 * time.Hour
)

// kardianosConfig is the registration for goos.
func (s ServiceSpec) kardianosConfig(goos string) (*service.Config, error) {
	if err := s.check(goos); err != nil {
		return nil, err
	}
	c := &service.Config{
		Name:        s.Name,
		DisplayName: "certkeeper",
		Description: "Keeps this node's TLS certificates installed, renewed and their daemons reloaded.",
		Executable:  s.Executable,
		Arguments:   AgentArgs(goos, s.Config),
		Option:      service.KeyValue{},
	}
	switch goos {
	case "linux":
		if !s.Install {
			break
		}
		unit, err := RenderSystemdUnit(systemd.Agent, s.Executable, c.Arguments, s.Writable)
		if err != nil {
			return nil, err
		}
		c.Option["SystemdScript"] = unit
	case "windows":
		c.Option["StartType"] = "automatic"
		// Delayed automatic start (after boot, once the network is up: the
		// first reconcile may pull) is set by afterInstall, which can do
		// without it where the service manager lacks it (Wine).
		c.Option["OnFailure"] = "restart"
		c.Option["OnFailureDelayDuration"] = WindowsRecovery[0].String()
		c.Option["OnFailureResetPeriod"] = int(WindowsRecoveryReset / time.Second)
	case "darwin":
		c.Option["RunAtLoad"] = true
		c.Option["KeepAlive"] = true
		c.Option["LogOutput"] = true
	}
	return c, nil
}

func (s ServiceSpec) check(goos string) error {
	if s.Name == "" {
		return errors.New("service: no name")
	}
	for _, p := range []struct{ what, path string }{{"executable", s.Executable}, {"config", s.Config}} {
		if !isAbs(goos, p.path) {
			return fmt.Errorf("service: the %s %q is not an absolute path", p.what, p.path)
		}
		if strings.ContainsFunc(p.path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("service: the %s path %q holds a control character", p.what, p.path)
		}
	}
	return nil
}

func isAbs(goos, p string) bool {
	if goos == "windows" {
		// C:\ or \\server\share; filepath.IsAbs judges by the host's rules.
		return len(p) > 2 && (p[1] == ':' && (p[2] == '\\' || p[2] == '/') || strings.HasPrefix(p, `\\`))
	}
	return strings.HasPrefix(p, "/")
}

// RenderSystemdUnit turns the shipped agent unit into one for this
// executable, these arguments and these writable directories: it replaces
// ExecStart= and adds ReadWritePaths= for directories the unit does not
// already open. It refuses paths the unit's sandbox would hide
// (ProtectHome=, PrivateTmp=), so that the agent does not fail at start
// with a puzzling "no such file".
func RenderSystemdUnit(unit, exe string, args, writable []string) (string, error) {
	for _, p := range append([]string{exe, configArg(args)}, writable...) {
		if dir, why := hiddenBySandbox(p); dir != "" {
			return "", fmt.Errorf("%s is under %s, which certkeeper.service %s; move it (the config belongs in /etc/certkeeper, state in /var/lib/certkeeper)", p, dir, why)
		}
	}
	exec := []string{systemdQuote(exe)}
	for _, a := range args {
		exec = append(exec, systemdQuote(a))
	}
	lines := strings.Split(unit, "\n")
	open := unitWritable(lines)
	var add []string
	for _, w := range writable {
		w = filepath.Clean(w)
		if !covered(open, w) && !slices.Contains(add, w) {
			add = append(add, w)
		}
	}
	slices.Sort(add)
	var out []string
	replaced := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "ExecStart="):
			l = "ExecStart=" + strings.Join(exec, " ")
			replaced = true
		case strings.HasPrefix(l, "ReadWritePaths=") && len(add) > 0:
			out = append(out, l)
			l = "# Directories of the config this unit was installed for (certkeeper service install).\nReadWritePaths=" + strings.Join(quoteAll(add, "-"), " ")
			add = nil
		}
		out = append(out, l)
	}
	if !replaced || add != nil {
		return "", errors.New("the agent unit has no ExecStart= or ReadWritePaths= line to fill in")
	}
	s := strings.Join(out, "\n")
	// kardianos renders the unit through its template engine, for which
	// "{{" starts an action.
	if strings.Contains(s, "{{") {
		return "", errors.New(`a path contains "{{", which the service installer can not write into a unit`)
	}
	return s, nil
}

func configArg(args []string) string {
	if i := slices.Index(args, "--config"); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// hiddenBySandbox says whether the agent unit's sandbox hides p.
func hiddenBySandbox(p string) (dir, why string) {
	for _, h := range []struct{ dir, why string }{
		{"/home", "hides (ProtectHome=yes)"},
		{"/root", "hides (ProtectHome=yes)"},
		{"/run/user", "hides (ProtectHome=yes)"},
		{"/tmp", "replaces with its own (PrivateTmp=yes)"},
		{"/var/tmp", "replaces with its own (PrivateTmp=yes)"},
	} {
		if p == h.dir || strings.HasPrefix(p, h.dir+"/") {
			return h.dir, h.why
		}
	}
	return "", ""
}

// unitWritable lists what a unit makes writable under ProtectSystem=strict.
func unitWritable(lines []string) []string {
	var open []string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "ReadWritePaths="); ok {
			for _, f := range strings.Fields(v) {
				open = append(open, strings.TrimPrefix(strings.TrimPrefix(f, "-"), "+"))
			}
		}
		if v, ok := strings.CutPrefix(l, "StateDirectory="); ok {
			for _, f := range strings.Fields(v) {
				open = append(open, "/var/lib/"+f)
			}
		}
	}
	return open
}

func covered(open []string, p string) bool {
	for _, o := range open {
		if p == o || strings.HasPrefix(p, o+"/") {
			return true
		}
	}
	return false
}

func quoteAll(ps []string, prefix string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = systemdQuote(prefix + p)
	}
	return out
}

// systemdQuote quotes one word of a unit setting (systemd.syntax(7),
// systemd.service(5) "Command lines"): "%" and "$" would expand, and
// blanks, quotes and backslashes would split or escape.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// PackagedUnitDirs are where a distribution package puts unit files.
var PackagedUnitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// packagedUnit returns the package's unit file for name, if there is one.
func packagedUnit(dirs []string, name string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name+".service")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// ServiceStatus is what the service manager says of the agent.
type ServiceStatus string

// Statuses.
const (
	ServiceRunning      ServiceStatus = "running"
	ServiceStopped      ServiceStatus = "stopped"
	ServiceNotInstalled ServiceStatus = "not installed"
)

// Service controls certkeeper's registration with the host's service
// manager.
type Service struct {
	spec   ServiceSpec
	system string
	svc    service.Service
	// Warnings are what Install could not set up and did without.
	Warnings []string
}

// OpenService finds the host's service manager; it fails with
// ErrNoServiceManager where certkeeper does not support the one it finds.
func OpenService(spec ServiceSpec) (*Service, error) {
	system := service.Platform()
	if err := CheckServiceSystem(system); err != nil {
		return nil, err
	}
	c, err := spec.kardianosConfig(runtime.GOOS)
	if err != nil {
		return nil, err
	}
	svc, err := service.New(nil, c)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	return &Service{spec: spec, system: system, svc: svc}, nil
}

// System names the service manager, for messages.
func (s *Service) System() string { return supportedSystems[s.system] }

// Install registers the agent to start at boot. It does not start it.
func (s *Service) Install() error {
	if s.system == "linux-systemd" {
		if p := packagedUnit(PackagedUnitDirs, s.spec.Name); p != "" {
			return fmt.Errorf("%s is already installed by certkeeper's package; enable it with `systemctl enable --now %s` (to use another config, `systemctl edit %s` and replace ExecStart=)", p, s.spec.Name, s.spec.Name)
		}
	}
	if err := s.svc.Install(); err != nil {
		return fmt.Errorf("install %s service %s: %w", s.System(), s.spec.Name, err)
	}
	warnings, err := afterInstall(s.spec.Name)
	s.Warnings = append(s.Warnings, warnings...)
	if err != nil {
		return fmt.Errorf("install %s service %s: %w", s.System(), s.spec.Name, err)
	}
	return nil
}

// Uninstall stops the service and removes the registration.
func (s *Service) Uninstall() error {
	if s.system == "linux-systemd" {
		if p := packagedUnit(PackagedUnitDirs, s.spec.Name); p != "" {
			return fmt.Errorf("%s belongs to certkeeper's package; remove the package, or `systemctl disable --now %s`", p, s.spec.Name)
		}
	}
	// A running service would keep running unregistered (systemd) or
	// linger marked for deletion (Windows); a stopped one fails to stop.
	_ = s.svc.Stop()
	return s.wrap("uninstall", s.svc.Uninstall())
}

// Start starts the agent now.
func (s *Service) Start() error { return s.wrap("start", s.svc.Start()) }

// Stop stops the agent.
func (s *Service) Stop() error { return s.wrap("stop", s.svc.Stop()) }

// Restart stops and starts the agent.
func (s *Service) Restart() error { return s.wrap("restart", s.svc.Restart()) }

// Status asks the service manager whether the agent runs.
func (s *Service) Status() (ServiceStatus, error) {
	if s.system == "linux-systemd" {
		// kardianos reads `systemctl is-active` and takes a crash loop
		// (activating, auto-restart) for running and a reload (SIGHUP)
		// for not installed; systemctl show says what the unit is.
		out, err := exec.Command("systemctl", "show", "--property=LoadState,ActiveState,SubState", "--", s.spec.Name+".service").Output()
		if err != nil {
			return "", s.wrap("status", fmt.Errorf("systemctl show: %w", err))
		}
		return systemdStatus(string(out)), nil
	}
	st, err := s.svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return ServiceNotInstalled, nil
	case err != nil:
		return "", s.wrap("status", err)
	case st == service.StatusRunning:
		return ServiceRunning, nil
	case st == service.StatusStopped:
		return ServiceStopped, nil
	}
	return "", fmt.Errorf("status of %s service %s: unknown", s.System(), s.spec.Name)
}

// systemdStatus maps `systemctl show -p LoadState,ActiveState,SubState`
// to a status: running while the agent's process is up (starting, active,
// reloading), stopped otherwise, including a unit waiting to be restarted
// after a crash (activating/auto-restart) and a failed one.
func systemdStatus(show string) ServiceStatus {
	p := map[string]string{}
	for _, l := range strings.Split(show, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			p[k] = v
		}
	}
	switch {
	case p["LoadState"] == "not-found" || p["LoadState"] == "":
		return ServiceNotInstalled
	case p["ActiveState"] == "active" || p["ActiveState"] == "reloading":
		return ServiceRunning
	case p["ActiveState"] == "activating" && p["SubState"] != "auto-restart":
		return ServiceRunning
	}
	return ServiceStopped
}

func (s *Service) wrap(verb string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s service %s: %w", verb, s.System(), s.spec.Name, err)
}

// Preview is what Install would register on goos, for `service install
// --dry-run`: the unit file under systemd, the command line elsewhere. It
// needs no running service manager.
func (s ServiceSpec) Preview(goos string) (string, error) {
	c, err := s.kardianosConfig(goos)
	if err != nil {
		return "", err
	}
	if unit, ok := c.Option["SystemdScript"].(string); ok {
		return "# /etc/systemd/system/" + s.Name + ".service\n" + unit, nil
	}
	return fmt.Sprintf("service %s runs: %s %s\n", s.Name, s.Executable, strings.Join(c.Arguments, " ")), nil
}
