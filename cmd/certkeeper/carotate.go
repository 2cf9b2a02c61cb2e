package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/certkeeper/certkeeper/authority"
)

// ---------------------------------------------------------------- ca rotate

var caRotateCmd = &command{name: "ca rotate", summary: "replace the cluster CA in phases, with no flag day",
	usage: `Usage: certkeeper ca rotate start|issue|finish|abort|status [--dir DIR] [--passphrase-file FILE]
       certkeeper ca rotate start [--days N]
       certkeeper ca rotate finish [--force]
       certkeeper ca rotate status [--json] [--inventory FILE]

Replaces the cluster CA without a flag day (docs/ca.md, "Replacing the
cluster CA"). Push or pull after each step, and let every node take it,
before the next:

  start    make the new CA (the old one stays and still signs) and publish
           a cluster.crt holding both CAs to every node
  issue    make the new CA the signing one and re-issue every node's leaf
           from it (CSR-mode nodes get theirs at their next ca sign)
  finish   drop the old CA from every node's cluster.crt; refused while a
           node still holds a leaf from the old CA, unless --force
  abort    go back to the old CA (any time before finish)
  status   the phase, what to run next, and per node what is published

Every step is recorded in ca.db; a step interrupted at any point is
completed by running the same command again.

  --days N    the new CA's validity (start; default: the old CA's)
  --force     finish although nodes still hold old-CA leaves
  --json      status as JSON
  --inventory FILE   status: read every node's report over SSH (as fleet
              status does) to fill the INSTALLED column
  --passphrase-file FILE   for an encrypted cluster.key

Examples:
  certkeeper ca rotate start
  certkeeper ca rotate status
  certkeeper ca rotate status --inventory /etc/certkeeper/nodes.toml
`}

func init() { caRotateCmd.run = withErrors(caRotateCmd, runCARotate) }

func runCARotate(ctx context.Context, e *env, args []string) error {
	c := caRotateCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	days := fs.Int("days", 0, "the new CA's validity in days")
	force := fs.Bool("force", false, "finish although nodes hold old-CA leaves")
	asJSON := fs.Bool("json", false, "print JSON")
	inventory := fs.String("inventory", "", "status: the nodes whose reports fill INSTALLED")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give one step: start, issue, finish, abort or status")
	}
	step := rest[0]
	switch step {
	case "start", "issue", "finish", "abort", "status":
	default:
		return usagef("unknown step %q: start, issue, finish, abort or status", step)
	}
	if err := checkDays(fs, "days"); err != nil {
		return err
	}
	if *inventory != "" && step != "status" {
		return usagef("--inventory is for ca rotate status")
	}
	// A flag another step would take is refused rather than ignored: a
	// `ca rotate start --json` that prints text, or an `abort --force`
	// that forces nothing, would leave a script or an admin believing it.
	for _, f := range []struct {
		set        bool
		flag, only string
	}{{*asJSON, "--json", "status"}, {*force, "--force", "finish"}, {*days != 0, "--days", "start"}} {
		if f.set && step != f.only {
			return usagef("%s is for ca rotate %s, not %s", f.flag, f.only, step)
		}
	}
	a, err := loadCA(e, &f, step != "status")
	if err != nil {
		return err
	}
	o := authority.RotateOptions{Days: *days, Force: *force}
	switch step {
	case "start":
		r, err := a.RotateStart(o)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "rotation started: new CA sha256 %s beside the old %s\nevery node's cluster.crt now holds both; push or pull, then run `certkeeper ca rotate issue`\n", r.To, r.From)
	case "issue":
		res, err := a.RotateIssue(ctx)
		if err != nil {
			return err
		}
		printRotateIssue(e, res, "new")
		if len(res.Failed) > 0 {
			return fmt.Errorf("%d node(s) not re-issued; run `certkeeper ca rotate issue` again", len(res.Failed))
		}
		fmt.Fprintln(e.stdout, "the new CA signs now; push or pull, then run `certkeeper ca rotate finish`")
	case "finish":
		r, err := a.RotateFinish(o)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "rotation finished: every node's cluster.crt holds the new CA (sha256 %s) alone; push or pull to deliver it\n", r.To)
	case "abort":
		r, res, err := a.RotateAbort(ctx)
		if res != nil {
			// An abort re-issues from the old CA: the one it goes back to.
			printRotateIssue(e, res, "old")
		}
		if err != nil {
			return err
		}
		if r.Phase != authority.PhaseNone {
			fmt.Fprintf(e.stdout, "abort waits at phase %s: %s\n", r.Phase, r.NextStep())
			return nil
		}
		fmt.Fprintln(e.stdout, "rotation aborted: the old CA signs and every node's cluster.crt holds it alone; push or pull to deliver it")
	case "status":
		installed, err := rotationInstalled(ctx, a, *inventory)
		if err != nil {
			return err
		}
		st, err := a.RotationState(installed)
		if err != nil {
			return err
		}
		if *asJSON {
			// "none", as the text says: a script need not know that
			// the record spells no rotation as "".
			js := *st
			if js.Phase == authority.PhaseNone {
				js.Phase = "none"
			}
			return writeJSON(e, js)
		}
		printRotateStatus(e, st)
	}
	return nil
}

// printRotateIssue reports a re-issue to the CA named by which: "new"
// for `ca rotate issue`, "old" for `ca rotate abort`, which re-issues from
// the CA it goes back to (authority's IssueResult calls that CA "new",
// since an abort is a rotation turned around).
func printRotateIssue(e *env, res *authority.IssueResult, which string) {
	for _, id := range res.Issued {
		fmt.Fprintf(e.stdout, "re-issued %s from the %s CA\n", id, which)
	}
	if len(res.Done) > 0 {
		fmt.Fprintf(e.stdout, "already on the %s CA: %s\n", which, strings.Join(res.Done, ", "))
	}
	if len(res.Waiting) > 0 {
		fmt.Fprintf(e.stdout, "CSR-mode, %s-CA certificate at their next request: %s\n", which, strings.Join(res.Waiting, ", "))
	}
	for _, f := range res.Failed {
		fmt.Fprintf(e.stderr, "certkeeper ca rotate: %s: %v\n", f.ID, f.Err)
	}
}

func printRotateStatus(e *env, st *authority.RotationStatus) {
	ph := string(st.Phase)
	if ph == "" {
		ph = "none"
	}
	if st.Aborted {
		ph += " (aborting)"
	}
	fmt.Fprintf(e.stdout, "phase: %s\n%s\n", ph, st.Explain)
	if st.Problem != "" {
		fmt.Fprintf(e.stdout, "problem: %s\n", st.Problem)
	}
	fmt.Fprintf(e.stdout, "signing CA: %s, sha256 %s, expires %s\n", st.Signing.Subject, st.Signing.SHA256, day(st.Signing.NotAfter))
	if st.Old != nil {
		fmt.Fprintf(e.stdout, "old CA: %s, sha256 %s\nnew CA: %s, sha256 %s\n", st.Old.Subject, st.Old.SHA256, st.New.Subject, st.New.SHA256)
	}
	if st.Next != "" && st.Phase != authority.PhaseNone {
		fmt.Fprintf(e.stdout, "next: %s\n", st.Next)
	}
	if len(st.Nodes) > 0 {
		// Columns as wide as their longest entry: a UUID id (what
		// `ca issue node` makes without one) is 36 characters.
		t := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
		fmt.Fprintln(t, "NODE\tSOURCE\tLEAF\tTRUST\tPUB-LEAF\tINSTALLED")
		for _, n := range st.Nodes {
			id := n.ID
			if n.Revoked {
				id += " (revoked)"
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", id, n.Source, or(n.Leaf, "-"), or(n.Published, "-"), or(n.PublishedLeaf, "-"), or(n.Installed, "unknown"))
		}
		t.Flush()
	}
	if len(st.OldLeafs) > 0 {
		fmt.Fprintf(e.stdout, "still on the old CA: %s\n", strings.Join(st.OldLeafs, ", "))
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
