package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/platform"
)

var agentCmd = &command{name: "agent", summary: "the node daemon: watch, repair, take the inbox, schedule renewal, reload",
	usage: `Usage: certkeeper agent [--config FILE]

Runs in the foreground (what the service runs) and looks after every bundle
of the config:

  - files dropped into a bundle's inbox (any names, any order) are installed
    once they have settled and form a valid set, then removed; a set that
    is wrong goes to inbox/rejected/<time>/ with a reason file;
  - drift of the live files (a chmod, a chown, a deleted, renamed or
    overwritten file) is repaired from the live generation within a second,
    without a reload;
  - each change reloads the bundle's daemons once, runs the bundle's check
    and rolls back when it fails;
  - renewal is scheduled from the certificate's lifetime; a due renewal
    shows in the log, status and metrics;
  - metrics on metrics_listen and/or metrics_textfile; its state for
    ` + "`certkeeper status`" + ` in <state_dir>/agent-state.json.

SIGHUP re-reads the config (a bad one is logged and the running one kept);
SIGTERM or SIGINT stops after any install or reload in progress.

  --log-format F   human, text (key=value) or json; overrides log_format
  --log-level L    debug, info, warn or error; overrides log_level
  --service        run under the Windows service manager; set by
                   ` + "`certkeeper service install`" + `, not by hand

Under systemd (Type=notify) it says READY=1 after the first reconcile of
every bundle, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 when it
stops, and WATCHDOG=1 at half of WatchdogSec while every bundle loop is alive.

Examples:
  certkeeper agent
  certkeeper agent --config ./certkeeper.toml --log-level debug
`}

func init() {
	agentCmd.run = withErrors(agentCmd, runAgent)
	register(agentCmd)
}

func runAgent(ctx context.Context, e *env, args []string) error {
	c := agentCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	format := fs.String("log-format", "", "human, text or json (overrides log_format)")
	level := fs.String("log-level", "", "debug, info, warn or error (overrides log_level)")
	asService := fs.Bool(platform.ServiceFlag, false, "run under the Windows service manager (certkeeper service install sets it)")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(rest, " "))
	}
	if *cfgPath == "" {
		return usagef("--config FILE is required")
	}
	switch *format {
	case "", "human", "text", "json":
	default:
		return usagef("--log-format %q is not one of human, text, json", *format)
	}
	switch *level {
	case "", "debug", "info", "warn", "error":
	default:
		return usagef("--log-level %q is not one of debug, info, warn, error", *level)
	}
	opts := agent.Options{LogOutput: e.stderr, SourceFor: agent.ConfiguredSource, Version: version}
	if *format != "" || *level != "" {
		cfg, err := agent.LoadConfig(*cfgPath)
		if err != nil {
			return err
		}
		f, l := cfg.LogFormat, cfg.LogLevel
		if *format != "" {
			f = *format
		}
		if *level != "" {
			l = *level
		}
		opts.Logger = agent.NewLogger(e.stderr, f, l)
	}
	// systemd's NOTIFY_SOCKET and WATCHDOG_USEC, read once and removed from
	// the environment so reload commands do not inherit them.
	notifier, nerr := platform.NotifierFromEnv(true)
	if nerr != nil {
		fmt.Fprintf(e.stderr, "certkeeper agent: %v (watchdog pings off)\n", nerr)
	}
	if notifier.Enabled() {
		opts.Notify = func(state string) {
			if err := notifier.Notify(state); err != nil {
				fmt.Fprintf(e.stderr, "certkeeper agent: sd_notify %s: %v\n", state, err)
			}
		}
		opts.WatchdogInterval = notifier.Watchdog
	}
	run := func(ctx context.Context) error { return agent.Run(ctx, *cfgPath, opts) }
	if *asService {
		err = platform.RunAsService(ctx, platform.ServiceName, run)
	} else {
		err = run(ctx)
	}
	return err
}
