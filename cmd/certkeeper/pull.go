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
	pullCmd.run = runPull
	register(pullCmd)
}

func runPull(ctx context.Context, e *env, args []string) int {
	c := pullCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	bundle := fs.String("bundle", "", "pull only this bundle")
	verbose := fs.Bool("verbose", false, "print each file as it is read, and log each step")
	rest, code, ok := parse(e, fs, args)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return usageError(e, c, "unexpected arguments: %s", strings.Join(rest, " "))
	}
	cfg, code, ok := loadConfig(e, c, *cfgPath)
	if !ok {
		return code
	}
	bundles, code, ok := selectBundles(e, c, cfg, *bundle, func(b *agent.Bundle) bool { return b.Mode == "pull" })
	if !ok {
		return code
	}
	if len(bundles) == 0 {
		return usageError(e, c, "config %s has no bundle in mode \"pull\"", cfg.Path)
	}
	src, each, err := agent.NewPullFailover(cfg)
	if err != nil {
		return failure(e, c, err)
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
	code = exitOK
	for _, b := range bundles {
		out, err := src.Pull(ctx, b, log)
		if err != nil {
			fmt.Fprintf(e.stderr, "certkeeper pull: %v\n", err)
			code = exitFailure
			continue
		}
		res := out.Result
		from := strings.TrimPrefix(src.Describe(b), "pull: ")
		if !res.Changed && out.Replayed {
			fmt.Fprintf(e.stdout, "%s: unchanged: %s holds what %s has (generation %s), but its reload was owed; ran it\n", b.Name, b.Resolved.Dir, from, res.Generation.Name)
			if printReloads(e, c, b.Name, out.Reloads) != exitOK {
				code = exitFailure
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
		if printReloads(e, c, b.Name, out.Reloads) != exitOK {
			code = exitFailure
		}
	}
	return code
}
