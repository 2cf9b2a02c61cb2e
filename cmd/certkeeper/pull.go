package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/rotate"
)

var pullCmd = &command{name: "pull", summary: "fetch bundles from the admin host over SFTP now, then install them",
	usage: `Usage: certkeeper pull [--config FILE] [--bundle NAME] [--verbose]

Connects to the admin host of the config's [source] (host key checked
against its known_hosts), reads each bundle's remote_dir (default
nodes/<node_id>), and runs the files through the same pipeline as
` + "`certkeeper install`" + `: classify, validate, atomic swap, reload, check (a
failing check rolls back and reloads again, as the agent does). A bundle whose
content is identical to the live one is left alone (no reload); a leaf
older than the live one is refused. Without --bundle, every bundle in
mode "pull" is pulled.

The remote directory may hold at most 16 regular files of at most 1 MiB
each; a symlink, a subdirectory, a device or a name that is not a plain
file name is refused. Names starting with "." are skipped.

Exit 0 when every bundle is installed or unchanged, 1 when any failed (the
message names the host and the reason; the live bundle is as it was) or its
check failed and it was rolled back, 2 on usage errors.

Examples:
  certkeeper pull
  certkeeper pull --bundle flocker --verbose
`}

func init() {
	pullCmd.run = withErrors(pullCmd, runPull)
	register(pullCmd)
}

// runPull pulls every bundle asked for, and says what became of each; one
// that failed does not stop the others (exit 1 at the end).
func runPull(ctx context.Context, e *env, args []string) error {
	c := pullCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	bundle := fs.String("bundle", "", "pull only this bundle")
	verbose := fs.Bool("verbose", false, "print each file as it is read, and log each step")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	bundles, err := selectBundles(cfg, *bundle, func(b *agent.Bundle) bool { return b.Mode == "pull" })
	if err != nil {
		return err
	}
	if len(bundles) == 0 {
		return usagef("config %s has no bundle in mode \"pull\"", cfg.Path)
	}
	src, each, err := agent.NewPullFailover(cfg)
	if err != nil {
		return err
	}
	if *verbose {
		for _, s := range each {
			s.OnFile = func(b *agent.Bundle, name string) {
				fmt.Fprintf(e.stdout, "%s: read %s\n", b.Name, name)
			}
		}
	}
	log := cliLogger(e, *verbose)
	src.Log = log
	var failed error
	for _, b := range bundles {
		out, err := src.Pull(ctx, b, log)
		if err != nil {
			fmt.Fprintf(e.stderr, "certkeeper pull: %v\n", err)
			failed = exitError(exitFailure)
			continue
		}
		res := out.Result
		from := strings.TrimPrefix(src.Describe(b), "pull: ")
		if !res.Changed && out.Replayed {
			fmt.Fprintf(e.stdout, "%s: unchanged: %s holds what %s has (generation %s), but its reload was owed; ran it\n", b.Name, b.Resolved.Dir, from, res.Generation.Name)
			if err := printReloads(e, c, b.Name, out.Reloads, true); err != nil {
				failed = err
			}
			continue
		}
		if !res.Changed {
			fmt.Fprintf(e.stdout, "%s: unchanged: %s holds what %s has (generation %s); no reload\n", b.Name, b.Resolved.Dir, from, res.Generation.Name)
			printRepaired(e, b.Name, res.Repaired)
			continue
		}
		var names []string
		for _, f := range rotate.Plan(res.Bundle, b.Resolved) {
			names = append(names, f.Name)
		}
		fmt.Fprintf(e.stdout, "%s: pulled from %s; installed generation %s in %s: %s\n", b.Name, from, res.Generation.Name, b.Resolved.Dir, strings.Join(names, ", "))
		if err := printReloads(e, c, b.Name, out.Reloads, true); err != nil {
			failed = err
		}
	}
	return failed
}
