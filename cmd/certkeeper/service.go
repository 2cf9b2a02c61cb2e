package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/platform"
)

var serviceCmd = &command{name: "service", summary: "install, remove, start, stop or query the agent as a system service",
	usage: `Usage: certkeeper service install|uninstall|start|stop|restart|status [--config FILE]

Registers the node agent with the host's service manager, which then runs
` + "`certkeeper agent --config FILE`" + ` at boot and restarts it when it fails:

  systemd    the hardened certkeeper.service (Type=notify, watchdog,
             ProtectSystem=strict) written to /etc/systemd/system, with
             ReadWritePaths added for this config's directories
  Windows    the service "certkeeper", automatic (delayed) start, restarted
             after a failure; it runs ` + "`certkeeper agent --config FILE --service`" + `
  macOS      the launchd daemon /Library/LaunchDaemons/certkeeper.plist

Where the certkeeper package installed certkeeper.service, enable it with
` + "`systemctl enable --now certkeeper`" + ` instead of ` + "`service install`" + `.
Anywhere else (SysV init, OpenRC, a container) install fails: run
` + "`certkeeper agent --config FILE`" + ` from your own init system.

install checks that the config loads, and does not start the service;
install --dry-run prints what it would register (under systemd, the unit)
and changes nothing.
status exits 0 when the agent runs, 3 when it is stopped or not installed.

  --config FILE   the agent's config (default ` + platform.DefaultConfigPath() + `, or $CERTKEEPER_CONFIG)
  --dry-run       with install: print, change nothing

Examples:
  certkeeper service install
  certkeeper service install --dry-run
  certkeeper service start
  certkeeper service status
  certkeeper service install --config C:\ProgramData\certkeeper\certkeeper.toml
`}

func init() {
	serviceCmd.run = withErrors(serviceCmd, runService)
	register(serviceCmd)
}

// exitNotRunning is LSB's "program is not running" for status.
const exitNotRunning = 3

func runService(_ context.Context, e *env, args []string) error {
	c := serviceCmd
	fs := flags(e, c)
	config := fs.String("config", "", "the agent's config file")
	dryRun := fs.Bool("dry-run", false, "install: print what would be registered (the systemd unit), change nothing")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give one action: install, uninstall, start, stop, restart or status")
	}
	action := pos[0]
	switch action {
	case "install", "uninstall", "start", "stop", "restart", "status":
	default:
		return usagef("unknown action %q; one of install, uninstall, start, stop, restart, status", action)
	}
	path, err := filepath.Abs(*config)
	if err != nil {
		return err
	}
	spec, err := serviceSpec(action, path)
	if err != nil {
		return err
	}
	if *dryRun {
		if action != "install" {
			return usagef("--dry-run goes with install")
		}
		preview, err := spec.Preview(runtime.GOOS)
		if err != nil {
			return err
		}
		fmt.Fprint(e.stdout, preview)
		return nil
	}
	svc, err := platform.OpenService(spec)
	if err != nil {
		return err
	}
	switch action {
	case "install":
		err = svc.Install()
	case "uninstall":
		err = svc.Uninstall()
	case "start":
		err = svc.Start()
	case "stop":
		err = svc.Stop()
	case "restart":
		err = svc.Restart()
	case "status":
		st, err := svc.Status()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %s (%s)\n", spec.Name, st, svc.System())
		if st != platform.ServiceRunning {
			return exitError(exitNotRunning)
		}
		return nil
	}
	if err != nil {
		return err
	}
	for _, w := range svc.Warnings {
		fmt.Fprintf(e.stderr, "certkeeper %s: warning: %s\n", c.name, w)
	}
	switch action {
	case "install":
		fmt.Fprintf(e.stdout, "installed %s into %s: it runs %s %s at boot; start it now with `certkeeper service start`\n",
			spec.Name, svc.System(), spec.Executable, strings.Join(platform.AgentArgs(runtime.GOOS, path), " "))
	default:
		fmt.Fprintf(e.stdout, "%s: %s done (%s)\n", spec.Name, action, svc.System())
	}
	return nil
}

// serviceSpec is what the service manager is told for action. Every action
// names this program (the registration is checked the same way for all);
// install also loads the config, since the service would only fail at
// start, and opens the directories it writes to in the unit's sandbox.
func serviceSpec(action, config string) (platform.ServiceSpec, error) {
	spec := platform.ServiceSpec{Name: platform.ServiceName, Config: config, Install: action == "install"}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return spec, fmt.Errorf("find this program's path: %w", err)
	}
	spec.Executable = exe
	if action == "install" {
		cfg, err := agent.LoadConfig(config)
		if err != nil {
			return spec, err
		}
		spec.Writable = cfg.WritableDirs()
	}
	return spec, nil
}
