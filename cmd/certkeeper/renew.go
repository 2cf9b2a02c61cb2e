package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

var renewCmd = &command{name: "renew", summary: "renew now, in each bundle's mode (pull or CSR); --force outside the renewal window",
	usage: `Usage: certkeeper renew [--config FILE] [--bundle NAME] [--force] [--verbose]

Renews now what the agent would renew at the bundle's renewal time, in the
bundle's mode:
  pull   fetch the bundle from the admin host ([source], remote_dir) and
         install it if its certificate is newer than the live one
  csr    make a new key on this node (the live key's type, or key_type),
         keep it in <state_dir>/csr/ (0600), send a certificate request over
         SSH to the admin host's CA account, where ` + "`certkeeper ca sign`" + ` answers
         with the chain, and install it; the key never leaves this node
Then the bundle's daemons are reloaded, once, and its check runs; when the
check fails, the previous generation is made live again and reloaded, as
the agent does, and the command exits 1.

A bundle that is not in its renewal window yet is left alone, without
calling the admin host, and says when its window opens (exit 0); --force
renews it anyway. Without --bundle, every bundle of the config.

Exit 0 when every bundle renewed or was not due, 1 when any failed (the
message names the host and the reason: unreachable, host key, refused,
"nothing newer" when the admin host has not re-issued yet; the live bundle
stays as it was), 2 on usage errors.

Examples:
  certkeeper renew
  certkeeper renew --bundle flocker --force
`}

func init() {
	renewCmd.run = withErrors(renewCmd, runRenew)
	register(renewCmd)
}

// runRenew renews every bundle asked for, and says what became of each;
// one that failed does not stop the others (exit 1 at the end).
func runRenew(ctx context.Context, e *env, args []string) error {
	c := renewCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	bundle := fs.String("bundle", "", "renew only this bundle")
	force := fs.Bool("force", false, "renew even outside the renewal window")
	verbose := fs.Bool("verbose", false, "log each step")
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
	bundles, err := selectBundles(cfg, *bundle, nil)
	if err != nil {
		return err
	}
	log := cliLogger(e, *verbose)
	var failed error
	for _, b := range bundles {
		r, err := agent.RenewNow(ctx, cfg, b, agent.ConfiguredSource(cfg, b), *force, time.Now(), log)
		if err != nil {
			fmt.Fprintf(e.stderr, "certkeeper renew: %v\n", err)
			failed = exitError(exitFailure)
			continue
		}
		if r.NotDue {
			fmt.Fprintf(e.stdout, "%s: not due: the renewal window opens %s (in %s), serial %s expires %s; nothing asked (--force renews now)\n",
				b.Name, r.Plan.RenewAt.UTC().Format(time.DateTime+" MST"), rotate.Age(time.Until(r.Plan.RenewAt)),
				pki.Serial(r.Leaf), r.Leaf.NotAfter.UTC().Format(time.DateTime+" MST"))
			continue
		}
		res := r.Outcome.Result
		fmt.Fprintf(e.stdout, "%s: renewed by %s from %s: generation %s in %s, serial %s, expires %s\n", b.Name, b.Mode, strings.TrimPrefix(r.Source, b.Mode+": "),
			res.Generation.Name, b.Resolved.Dir, pki.Serial(r.Leaf), r.Leaf.NotAfter.UTC().Format(time.DateTime+" MST"))
		if err := printReloads(e, c, b.Name, r.Outcome.Reloads, true); err != nil {
			failed = err
		}
	}
	return failed
}
