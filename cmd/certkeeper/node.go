package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// Set at build time: -ldflags "-X main.version=1.2.3 -X main.commit=abc".
var (
	version = "0.1.0-dev"
	commit  = ""
)

func init() {
	register(versionCmd)
	register(verifyCmd)
	register(installCmd)
	register(statusCmd)
	register(checkCmd)
	register(rollbackCmd)
}

var versionCmd = &command{name: "version", summary: "print the version", usage: `Usage: certkeeper version [--json]

Prints certkeeper's version, the commit it was built from, the Go version
and the platform: what a bug report needs. certkeeper --version and -v
do the same. The commit is what the build stamped: the packages and
scripts/build always do; a plain go build only in a repository's main
checkout (Go skips a linked git worktree, and GOFLAGS=-buildvcs=false).

Example:
  certkeeper version
`}

func init() { versionCmd.run = withErrors(versionCmd, runVersion) }

func runVersion(_ context.Context, e *env, args []string) error {
	fs := flags(e, versionCmd)
	asJSON := fs.Bool("json", false, "print JSON (docs/json.md)")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *asJSON {
		writeJSON(e, versionJSON{Version: version, Commit: buildCommit(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH})
		return nil
	}
	v := "certkeeper " + version
	if c := buildCommit(); c != "" {
		v += " (" + c + ")"
	}
	fmt.Fprintf(e.stdout, "%s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// cliLogger logs what the library reports (reload output, warnings) to
// stderr; the commands print their own results to stdout. A refused
// delivery is left out: the command prints the refusal as its error, once.
func cliLogger(e *env, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(saidByCommand{slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})})
}

// saidByCommand drops the log records a command reports itself.
type saidByCommand struct{ slog.Handler }

func (h saidByCommand) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == agent.MsgRefused {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h saidByCommand) WithAttrs(as []slog.Attr) slog.Handler {
	return saidByCommand{h.Handler.WithAttrs(as)}
}

func (h saidByCommand) WithGroup(name string) slog.Handler {
	return saidByCommand{h.Handler.WithGroup(name)}
}

var verifyCmd = &command{name: "verify", summary: "check files as one bundle under a layout's rules; installs nothing",
	usage: `Usage: certkeeper verify [--ca FILE] [--node-id ID] [--layout NAME] [--json] FILE...

Classifies FILEs by content (whatever their names), then checks them as one
bundle: they parse, the key matches the leaf, the leaf chains to the cluster
CA, is valid now, is not a CA, names the node, allows the layout's usage
(server and client auth unless the layout says less) by its extended key
usage and key usage, keys are strong enough and no signature uses SHA-1 or
MD5. Exit 0 when the bundle is valid, 1 when not; a valid bundle some peer
will still refuse (an old certificate without the node id as a SAN) gets a
WARNING line.

  --ca FILE       the cluster CA to trust; a bundle bringing another CA fails
  --node-id ID    the node the leaf must name: a SAN (the CN only when the
                  leaf has no SANs); unchecked if unset
  --layout NAME   a preset's rules: flocker-node, flocker-control, mesos, glow,
                  clusterio, clusterio-host, reign, reign-init, custom (default)

Examples:
  certkeeper verify --node-id 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a \
      8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.crt 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.key cluster.crt
  certkeeper verify --layout reign --node-id 1 signing.crt node.1.crt node.1.key
  certkeeper verify --ca /etc/flocker/cluster.crt new-node.crt new-node.key
`}

func init() { verifyCmd.run = withErrors(verifyCmd, runVerify) }

func runVerify(_ context.Context, e *env, args []string) error {
	fs := flags(e, verifyCmd)
	caFile := fs.String("ca", "", "cluster CA certificate to trust")
	nodeID := fs.String("node-id", "", "node id the leaf must name")
	layout := fs.String("layout", "custom", "layout preset whose rules apply")
	asJSON := fs.Bool("json", false, "print JSON (docs/json.md)")
	files, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usagef("no files given")
	}
	l, err := rotate.Rules(*layout, *nodeID)
	if err != nil {
		return usagef("%v", err)
	}
	v, err := agent.Verify(files, *caFile, rotate.Policy{Layout: l, NodeID: *nodeID, Now: time.Now()})
	if err != nil {
		return err
	}
	cand, b := v.Candidate, v.Bundle
	if *asJSON {
		writeJSON(e, verifyReport(files, l, *nodeID, b, v.Invalid))
		if v.Invalid != nil {
			return exitError(exitFailure)
		}
		return nil
	}
	if v.Invalid != nil {
		fmt.Fprintf(e.stdout, "INVALID: %v\n", v.Invalid)
		return exitError(exitFailure)
	}
	who := "any node (no --node-id given)"
	if *nodeID != "" {
		who = fmt.Sprintf("node %q", *nodeID)
	}
	fmt.Fprintf(e.stdout, "OK: %d file(s) form a valid bundle for %s under the %s layout's rules\n", len(files), who, l.Preset)
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	if cand.Leaf != nil {
		i := pki.Describe(b.Leaf)
		fmt.Fprintf(w, "  leaf\t%s\t%s; %s; expires %s (in %s)\n", cand.Leaf.File, i.Subject, orDash(i.SANs()), rotate.Stamp(i.NotAfter), rotate.Age(time.Until(i.NotAfter)))
		for _, x := range cand.Intermediates {
			fmt.Fprintf(w, "  intermediate\t%s\t%s\n", x.File, pki.Name(x.Cert.Subject.String()))
		}
	}
	if cand.Key != nil {
		desc, _ := pki.KeyStrength(cand.Key.Key.Signer.Public())
		fmt.Fprintf(w, "  key\t%s\t%s (%s), matches the leaf\n", cand.Key.File, desc, cand.Key.Key.Format.Label())
	}
	for _, ca := range b.CAs {
		src := "--ca " + *caFile
		for _, x := range cand.CAs {
			if x.Cert.Equal(ca) {
				src = x.File
			}
		}
		if cand.Leaf != nil && cand.Leaf.Cert.Equal(ca) {
			src = cand.Leaf.File + " (self-signed: its own CA)"
		}
		fmt.Fprintf(w, "  cluster CA\t%s\t%s (sha256 %s)\n", src, pki.Name(ca.Subject.String()), pki.Fingerprint(ca))
	}
	var names []string
	for _, f := range rotate.Plan(b, l) {
		names = append(names, f.Name)
	}
	if l.Preset != "custom" {
		fmt.Fprintf(w, "  installs as\t\t%s\n", strings.Join(names, ", "))
	}
	w.Flush()
	for _, p := range b.Warnings {
		fmt.Fprintf(e.stdout, "WARNING: %v\n", p)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "no SANs"
	}
	return s
}

// loadConfig loads --config, reporting errors the same way everywhere.
func loadConfig(path string) (*agent.Config, error) {
	if path == "" {
		return nil, usagef("--config FILE is required")
	}
	return withConfigHint(agent.LoadConfig(path))
}

// withConfigHint adds, to a config that is not there, where certkeeper
// looked and how to point it elsewhere: the first command of a first
// hour is often `certkeeper status` on a machine without the package.
func withConfigHint(cfg *agent.Config, err error) (*agent.Config, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (write one, docs/config.md, or point --config or $%s at yours; the package installs a starter config)", err, envConfig)
	}
	return cfg, err
}

// selectBundles is the bundle named by --bundle, or, without it, every
// bundle of the config that keep accepts (keep nil: all of them).
func selectBundles(cfg *agent.Config, name string, keep func(*agent.Bundle) bool) ([]*agent.Bundle, error) {
	if name != "" {
		b, err := cfg.BundleNamed(name)
		if err != nil {
			return nil, usagef("%v", err)
		}
		return []*agent.Bundle{b}, nil
	}
	var bundles []*agent.Bundle
	for i := range cfg.Bundles {
		if keep == nil || keep(&cfg.Bundles[i]) {
			bundles = append(bundles, &cfg.Bundles[i])
		}
	}
	return bundles, nil
}

var installCmd = &command{name: "install", summary: "classify, validate and install files into a bundle, then reload; once",
	usage: `Usage: certkeeper install [--config FILE] [--bundle NAME] FILE...

Takes a bundle's files under any names (8eab….crt, control-host.key,
cluster.crt), validates them for this node, and installs them under the
layout's canonical names and modes in one atomic swap. The bundle's reload
actions run only when the live content changed, then its check command if
it has one: when that fails, the previous generation goes back, is
reloaded, and the new certificate is refused from then on, as the agent
does. A bundle that fails validation changes nothing. The files already
live, installed again, repair the live directory (content, modes, owner)
without a reload.

Exit 0 when installed (or already identical), 1 when refused, when a
reload failed or when the check failed (and rolled back), 2 on usage
errors.

Examples:
  certkeeper install \
      8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.crt 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.key cluster.crt
  certkeeper install --bundle mesos localhost.pem localhost-key.pem ca.pem
`}

func init() { installCmd.run = withErrors(installCmd, runInstall) }

func runInstall(ctx context.Context, e *env, args []string) error {
	c := installCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	bundle := fs.String("bundle", "", "bundle name (needed when the config has several)")
	verbose := fs.Bool("verbose", false, "log each step")
	files, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usagef("no files given")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	b, err := cfg.BundleNamed(*bundle)
	if err != nil {
		return usagef("%v", err)
	}
	inputs, err := agent.ReadInputs(files)
	if err != nil {
		return err
	}
	out, err := agent.Install(ctx, b, inputs, "install: "+strings.Join(names(inputs), " "), cliLogger(e, *verbose))
	if err != nil {
		return err
	}
	res := out.Result
	if !res.Changed && out.Replayed {
		fmt.Fprintf(e.stdout, "%s: unchanged: %s already holds these files (generation %s), but its reload was owed; ran it\n", b.Name, b.Resolved.Dir, res.Generation.Name)
		printRepaired(e, b.Name, res.Repaired)
		return printReloads(e, c, b.Name, out.Reloads, true)
	}
	if !res.Changed {
		fmt.Fprintf(e.stdout, "%s: unchanged: %s already holds these files (generation %s); no reload\n", b.Name, b.Resolved.Dir, res.Generation.Name)
		printRepaired(e, b.Name, res.Repaired)
		return nil
	}
	var fileNames []string
	for _, f := range rotate.Plan(res.Bundle, b.Resolved) {
		fileNames = append(fileNames, f.Name)
	}
	fmt.Fprintf(e.stdout, "%s: installed generation %s in %s: %s\n", b.Name, res.Generation.Name, b.Resolved.Dir, strings.Join(fileNames, ", "))
	if err := printReloads(e, c, b.Name, out.Reloads, true); err != nil {
		return err
	}
	printServed(e, b.Name, out.Served)
	return nil
}

// printServed says that the served check saw the daemon take the new
// certificate (a failed one is the command's error, said already).
func printServed(e *env, bundle string, o *agent.ServedOutcome) {
	if o == nil || o.Step != agent.ServedDone || !o.Last.Match {
		return
	}
	if o.ExtraReloads > 0 {
		fmt.Fprintf(e.stdout, "%s: %s serves serial %s, the new certificate, after %d more reloads\n", bundle, o.Last.Endpoint, o.Last.Serial, o.ExtraReloads)
		return
	}
	fmt.Fprintf(e.stdout, "%s: %s serves serial %s, the new certificate\n", bundle, o.Last.Endpoint, o.Last.Serial)
}

// printRepaired lists what an install of unchanged files restored: the
// live files are again what the daemon was given, so no reload follows.
func printRepaired(e *env, bundle string, repaired []rotate.Drift) {
	for _, d := range repaired {
		fmt.Fprintf(e.stdout, "%s: repaired %s\n", bundle, d)
	}
}

// printReloads reports each reload; when one failed, it says so on stderr
// and returns exit 1 (an exitError: said already). owed: the reloads are a
// delivery's (install, pull, renew), whose failed reload stays owed
// (agent.Pipeline.Command); a rollback's is not.
func printReloads(e *env, c *command, bundle string, reloads []platformResult, owed bool) error {
	failed := false
	for _, r := range reloads {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(e.stdout, "%s: reload %s: skipped, %s\n", bundle, r.Action, r.Skipped)
		case r.Err != nil:
			failed = true
			fmt.Fprintf(e.stderr, "certkeeper %s: %s: reload %s failed: %v\n", c.name, bundle, r.Action, r.Err)
			if r.Output != "" {
				fmt.Fprintf(e.stderr, "%s\n", indent(r.Output))
			}
		default:
			fmt.Fprintf(e.stdout, "%s: reload %s: ok (%s)\n", bundle, r.Action, r.Duration.Round(time.Millisecond))
		}
	}
	if failed && owed {
		fmt.Fprintf(e.stderr, "certkeeper %s: %s: the new files are installed, but a daemon may still serve the old ones; the reload stays owed (status and check say so): fix it, then the agent runs it at its next rescan, or run this command again; or `certkeeper rollback`\n", c.name, bundle)
		return exitError(exitFailure)
	}
	if failed {
		fmt.Fprintf(e.stderr, "certkeeper %s: %s: the new files are installed, but a daemon may still serve the old ones; fix the reload and run it by hand, or `certkeeper rollback`\n", c.name, bundle)
		return exitError(exitFailure)
	}
	return nil
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

func names(in []rotate.Input) []string {
	n := make([]string, len(in))
	for i, x := range in {
		n[i] = x.Name
	}
	return n
}

var rollbackCmd = &command{name: "rollback", summary: "make a bundle's previous generation live again, then reload",
	usage: `Usage: certkeeper rollback [--config FILE] [--bundle NAME] [--force]

Swaps the bundle back to the newest kept generation older than the live one
(certkeeper keeps two by default, see keep in the config) and runs the
bundle's reload actions. The previous generation must still validate (not
expired, key matching); --force rolls back anyway.

Example:
  certkeeper rollback --bundle flocker
`}

func init() { rollbackCmd.run = withErrors(rollbackCmd, runRollback) }

func runRollback(ctx context.Context, e *env, args []string) error {
	c := rollbackCmd
	fs := flags(e, c)
	cfgPath := fs.String("config", "", "agent config file")
	bundle := fs.String("bundle", "", "bundle to roll back (default: the config's only bundle)")
	force := fs.Bool("force", false, "roll back even if the previous generation no longer validates")
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
	// Without --bundle, the config's only bundle.
	b, err := cfg.BundleNamed(*bundle)
	if err != nil {
		return usagef("%v", err)
	}
	r, err := agent.Rollback(ctx, b, *force, cliLogger(e, false))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: rolled back from %s to %s (installed %s)\n", b.Name, r.From.Name, r.To.Name, rotate.Stamp(r.To.Installed))
	switch r.Refused {
	case agent.RefusedCertificate:
		fmt.Fprintf(e.stdout, "%s: the certificate rolled away from is refused from the admin host from now on; a newer one is taken as usual\n", b.Name)
	case agent.RefusedSet:
		fmt.Fprintf(e.stdout, "%s: the set rolled away from (the same certificate with other CAs or another CRL) is refused from the admin host from now on; another set is taken as usual\n", b.Name)
	}
	err = printReloads(e, c, b.Name, r.Reloads, false)
	if r.RefuseErr != nil {
		fmt.Fprintf(e.stderr, "certkeeper %s: %s: could not record the certificate rolled away from as refused (%v); the agent may pull it again: fix the state directory and roll back again\n", c.name, b.Name, r.RefuseErr)
		return exitError(exitFailure)
	}
	return err
}

var statusCmd = &command{name: "status", summary: "show each bundle: files, names, issuer, expiry, permissions, key match, next renewal",
	usage: `Usage: certkeeper status [--config FILE] [--json]

For each bundle: the live generation, its files with modes, owners and
whether they are intact, the certificate's subject, SANs, issuer, serial,
validity and time left, whether the key matches, the chain, the next
renewal time, and an installed CRL's number and next update. Read-only.

Examples:
  certkeeper status
  certkeeper status --json | jq '.[].leaf.not_after'
`}

func init() { statusCmd.run = withErrors(statusCmd, runStatus) }

// statuses is every bundle's files merged with the agent's runtime state
// (agent.Reports), so status, status --json and check say the same.
func statuses(cfg *agent.Config) []agent.Report { return agent.Reports(cfg) }

func runStatus(_ context.Context, e *env, args []string) error {
	fs := flags(e, statusCmd)
	cfgPath := fs.String("config", "", "agent config file")
	asJSON := fs.Bool("json", false, "print JSON")
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
	sts := statuses(cfg)
	if *asJSON {
		return writeJSON(e, sts)
	}
	for i, st := range sts {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		printStatus(e.stdout, st)
	}
	return nil
}

func printStatus(w io.Writer, r agent.Report) {
	st := r.Status
	fmt.Fprintf(w, "bundle %s (%s) in %s: %s: %s\n", st.Name, st.Layout, st.Dir, st.Health, st.HealthText)
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if st.Generation != "" {
		fmt.Fprintf(t, "  generation\t%s, installed %s", st.Generation, rotate.Stamp(st.Installed))
		if st.Source != "" {
			fmt.Fprintf(t, " (%s)", st.Source)
		}
		fmt.Fprintln(t)
		if len(st.Previous) > 0 {
			fmt.Fprintf(t, "  kept\t%s\n", strings.Join(st.Previous, ", "))
		}
		if st.LinkMode != "" {
			fmt.Fprintf(t, "  live files\t%s\n", st.LinkModeWhy)
		}
	}
	if l := st.Leaf; l != nil {
		fmt.Fprintf(t, "  subject\t%s\n", l.Subject)
		fmt.Fprintf(t, "  SANs\t%s\n", orDash(l.SANs()))
		fmt.Fprintf(t, "  issuer\t%s\n", l.Issuer)
		fmt.Fprintf(t, "  serial\t%s\n", l.Serial)
		fmt.Fprintf(t, "  validity\t%s to %s (%s)\n", rotate.Stamp(l.NotBefore), rotate.Stamp(l.NotAfter), leftText(st.TimeLeft))
		match := "matches the certificate"
		if !st.KeyMatch {
			match = "DOES NOT MATCH the certificate"
		}
		fmt.Fprintf(t, "  key\t%s, %s\n", l.Key, match)
		fmt.Fprintf(t, "  chain\t%s\n", st.Chain)
		if !st.RenewAt.IsZero() {
			fmt.Fprintf(t, "  next renewal\t%s\n", rotate.Stamp(st.RenewAt))
		}
	}
	for _, ca := range st.CA {
		fmt.Fprintf(t, "  cluster CA\t%s, expires %s\n", ca.Subject, ca.NotAfter.Format(time.DateOnly))
	}
	if c := st.CRL; c != nil {
		// What the daemon checks revocation against, and when it goes
		// stale: status --json has it as crl, check judges it.
		fmt.Fprintf(t, "  CRL\t%s: number %s from %s, %d revoked, next update %s", c.File, c.Number, c.Issuer, c.Entries, rotate.Stamp(c.NextUpdate))
		if c.CRLs > 1 {
			fmt.Fprintf(t, " (the first of %d CRLs to go stale, one per CA of a rotation)", c.CRLs)
		}
		fmt.Fprintln(t)
	}
	t.Flush()
	if len(st.Files) > 0 {
		fmt.Fprintln(w, "  files")
		t = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range st.Files {
			state := "ok"
			if !f.OK {
				state = f.Problem
			}
			fmt.Fprintf(t, "    %s\t%s\t%s\t%s\t%s\n", f.Name, f.Role, orQ(f.Mode), orQ(f.Owner), state)
		}
		t.Flush()
	}
	for _, p := range st.Problems {
		if p != st.HealthText {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	}
	if a := r.Agent; a != nil {
		printAgent(w, a)
	}
}

func printAgent(w io.Writer, a *agent.AgentView) {
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case a.Running:
		fmt.Fprintf(t, "  agent	running (pid %d) since %s\n", a.PID, rotate.Stamp(a.Started))
	case !a.Stopped.IsZero():
		fmt.Fprintf(t, "  agent	stopped at %s (state as it left it)\n", rotate.Stamp(a.Stopped))
	default:
		fmt.Fprintf(t, "  agent	NOT RUNNING: pid %d is gone without a clean stop\n", a.PID)
	}
	ev := func(label string, e *agent.Event) {
		if e == nil {
			return
		}
		fmt.Fprintf(t, "  %s\t%s at %s", label, e.Result, rotate.Stamp(e.Time))
		if e.Detail != "" {
			fmt.Fprintf(t, ": %s", e.Detail)
		}
		fmt.Fprintln(t)
	}
	ev("last install", a.LastInstall)
	ev("last reload", a.LastReload)
	ev("last check", a.LastCheck)
	ev("last rollback", a.LastRollback)
	ev("last repair", a.LastRepair)
	ev("last error", a.LastError)
	if sv := a.Served; sv != nil {
		state := "matches the live certificate"
		switch {
		case !sv.Match && sv.Serial != "":
			state = "MISMATCH: live is serial " + sv.LiveSerial
		case !sv.Match:
			state = "check failed: " + sv.Error
		}
		served := sv.Serial
		if served == "" {
			served = "-"
		}
		fmt.Fprintf(t, "  served\t%s serves serial %s, %s (checked %s)", sv.Endpoint, served, state, sv.Checked.Format(time.DateTime+" MST"))
		if sv.Action != "" {
			fmt.Fprintf(t, "; %s", sv.Action)
		}
		fmt.Fprintln(t)
	}
	if a.RenewalDue {
		fmt.Fprintf(t, "  renewal\tDUE since %s", rotate.Stamp(a.RenewAt))
		if s := a.Source; s != nil && s.NothingNewer > 0 {
			fmt.Fprintf(t, "; source has nothing newer (%d fetches)", s.NothingNewer)
		}
		fmt.Fprintln(t)
	}
	if a.ExpiryCritical {
		fmt.Fprintf(t, "  expiry\tCRITICAL: expires %s and has not been renewed\n", rotate.Stamp(a.NotAfter))
	}
	if a.RenewalError != "" {
		fmt.Fprintf(t, "  renewal\t%s\n", a.RenewalError)
	}
	if a.Waiting != "" {
		fmt.Fprintf(t, "  inbox\twaiting: %s\n", a.Waiting)
	}
	if s := a.Source; s != nil {
		next := "none planned (outside the renewal window)"
		if !s.NextTry.IsZero() {
			next = rotate.Stamp(s.NextTry)
		}
		fmt.Fprintf(t, "  source\tnext try %s", next)
		if s.Failures > 0 {
			fmt.Fprintf(t, "; %d failure(s), last: %s", s.Failures, s.LastError)
		} else if s.LastResult != "" {
			fmt.Fprintf(t, "; last: %s", s.LastResult)
		}
		if s.Answered != "" {
			fmt.Fprintf(t, "; answered: %s", s.Answered)
		}
		fmt.Fprintln(t)
	}
	c := a.Counters
	fmt.Fprintf(t, "  counters\tinstalls %d, reloads %d (failed %d), repairs %d, rejected %d, rollbacks %d, check failures %d, fetches %d (failed %d)\n",
		c.Installs, c.Reloads, c.ReloadFailures, c.Repairs, c.Rejected, c.Rollbacks, c.CheckFailures, c.Fetches, c.SourceErrors)
	t.Flush()
}

func leftText(s string) string {
	if strings.HasPrefix(s, "expired") {
		return s
	}
	return s + " left"
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

var checkCmd = &command{name: "check", summary: "one line for monitoring; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
	usage: `Usage: certkeeper check [--config FILE] [--ack [--bundle NAME]] [--json]

Prints one line, for Nagios, Icinga or a cron job, and exits with its state
(the worst bundle's):
  0 OK        every bundle is installed, intact and outside its renewal window
  1 WARNING   a bundle is in its renewal window, or the agent's last reload,
              check or inbox set failed (until something newer succeeds),
              renewal fetches are failing, or the agent is not running and
              did not stop cleanly
  2 CRITICAL  a bundle is expired, about to expire without renewal (10% of
              its lifetime or 24h, whichever is less), missing, damaged, or
              its files drifted in a way the agent can not repair
  3 UNKNOWN   the config can not be read, or the agent's state file can not
              be read

The line is a Nagios plugin's: "CERTKEEPER WARNING - bundle flocker: …
| flocker_expiry_seconds=2592000s". A rejected inbox set warns until the
bundle's live files change (an install, renewal or rollback), its
directory is removed, or the admin acknowledges it with --ack. The
package's starter config (node_id still the placeholder) is OK: nothing
configured yet.

Examples:
  certkeeper check || alert
  certkeeper check --ack
  certkeeper check --json
`}

func init() { checkCmd.run = withErrors(checkCmd, runCheck) }

// runCheck's exit code is the Nagios state; even a usage mistake is
// UNKNOWN (3), not 2, as monitoring systems expect of a plugin.
func runCheck(_ context.Context, e *env, args []string) error {
	fs := flags(e, checkCmd)
	cfgPath := fs.String("config", "", "agent config file")
	ack := fs.Bool("ack", false, "acknowledge the rejected inbox sets and failed installs seen so far, then check")
	bundle := fs.String("bundle", "", "with --ack: only this bundle")
	asJSON := fs.Bool("json", false, "print JSON (docs/json.md)")
	rest, err := parse(e, fs, args)
	var said exitError
	if errors.As(err, &said) && said == exitUsage {
		return exitError(rotate.Unknown)
	}
	if err != nil {
		return err
	}
	unknown := func(msg string) error {
		if *asJSON {
			writeJSON(e, checkJSON{Health: rotate.Unknown.String(), Exit: int(rotate.Unknown), Text: msg})
		} else {
			fmt.Fprintf(e.stdout, "CERTKEEPER UNKNOWN - %s\n", msg)
		}
		return exitError(rotate.Unknown)
	}
	if len(rest) > 0 {
		return unknown("usage: certkeeper check [--config FILE] [--ack [--bundle NAME]] [--json]")
	}
	cfg, err := withConfigHint(agent.LoadConfig(*cfgPath))
	if err != nil {
		return unknown(oneLine(err))
	}
	if *ack {
		if err := agent.Acknowledge(cfg, *bundle, time.Now()); err != nil {
			return unknown(oneLine(err))
		}
	}
	sts := statuses(cfg)
	now := time.Now()
	line, h := checkLine(sts, now)
	if *asJSON {
		writeJSON(e, checkReport(sts, now))
	} else {
		fmt.Fprintln(e.stdout, line)
	}
	return exitCodeOf(int(h))
}

// checkJSON is check --json: the same judgement as the line.
type checkJSON struct {
	Health  string            `json:"health"`
	Exit    int               `json:"exit"`
	Text    string            `json:"text,omitempty"`
	Bundles []checkBundleJSON `json:"bundles,omitempty"`
}

type checkBundleJSON struct {
	Name          string `json:"name"`
	Health        string `json:"health"`
	Text          string `json:"text"`
	ExpirySeconds *int64 `json:"expiry_seconds,omitempty"`
	NotAfter      string `json:"not_after,omitempty"`
}

func checkReport(sts []agent.Report, now time.Time) checkJSON {
	line, h := checkLine(sts, now)
	out := checkJSON{Health: h.String(), Exit: int(h), Text: line}
	for _, st := range sts {
		b := checkBundleJSON{Name: st.Name, Health: st.Health.String(), Text: oneLine(errors.New(st.HealthText))}
		if st.Leaf != nil {
			secs := jsonSeconds(st.Leaf.NotAfter.Sub(now))
			b.ExpirySeconds, b.NotAfter = &secs, jsonTime(st.Leaf.NotAfter)
		}
		out.Bundles = append(out.Bundles, b)
	}
	return out
}

// checkLine is the Nagios plugin line: "CERTKEEPER STATE - bundle NAME:
// text; …", worst bundle first, then performance data, each bundle's
// seconds to expiry.
func checkLine(sts []agent.Report, now time.Time) (string, rotate.Health) {
	worst := rotate.OK
	for _, st := range sts {
		if agent.Severity(st.Health) > agent.Severity(worst) {
			worst = st.Health
		}
	}
	var parts, perf []string
	for _, h := range []rotate.Health{rotate.Critical, rotate.Warning, rotate.Unknown, rotate.OK} {
		for _, st := range sts {
			if st.Health == h {
				parts = append(parts, fmt.Sprintf("bundle %s: %s", st.Name, oneLine(errors.New(st.HealthText))))
			}
		}
	}
	for _, st := range sts {
		if st.Leaf != nil {
			perf = append(perf, fmt.Sprintf("%s_expiry_seconds=%ds", perfLabel(st.Name), jsonSeconds(st.Leaf.NotAfter.Sub(now))))
		}
	}
	line := fmt.Sprintf("CERTKEEPER %s - %s", worst, strings.Join(parts, "; "))
	if len(perf) > 0 {
		line += " | " + strings.Join(perf, " ")
	}
	return line, worst
}

// perfLabel makes a bundle name a performance data label: no spaces,
// quotes or equals signs.
func perfLabel(name string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\'' || r == '=' || r == '|' {
			return '_'
		}
		return r
	}, name)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
