package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/rotate"
)

var pushCmd = &command{name: "push", summary: "send each node its bundle over SSH/SFTP, many nodes at once",
	usage: `Usage: certkeeper push --inventory FILE [--ca-dir DIR] [--concurrency N] [--only ID,...] [--install] [--dry-run] [--json]

For every node of the inventory, opens one SSH connection (host key checked
against known_hosts; no option turns that off) and uploads the node's
bundle from DIR/nodes/<id>/ into the node's target directory: each file
under a temporary name, created 0600 before any byte is written, flushed
to disk (fsync@openssh.com), then renamed into place (posix-rename). Up to
N nodes are pushed at once. A progress bar is shown on a terminal, one line
per node otherwise, and a table of results at the end.

Without --install, target is the agent's inbox on the node: the files go
as they are named, and the agent validates and installs them. With
--install (nodes without an agent), the bundle is validated here and
written straight into target under the layout's names and modes (key 0600,
certificates 0644), as the Flocker guide does by hand with scp, mv and
chmod. Each file is replaced atomically, but not the set: for one round
trip a daemon reading then could see the new certificate with the old key.
A target managed by an agent (it has ..data) is refused with --install.

  --inventory FILE   the nodes (TOML: [defaults], then [[node]]; see docs/ssh.md)
  --ca-dir DIR       the CA directory holding nodes/<id>/ for each node
  --concurrency N    nodes at once (default 32)
  --only ID,...      push only these nodes
  --install          write canonical names and modes into target (no agent)
  --dry-run          connect, check host keys, logins and targets; write nothing
  --canary N         push to the first N nodes, wait until their fleet reports
                     show the bundle installed, checked and served, then go on
  --wave N,M,...     then push in waves of N, then M (the last size repeats)
  --wait DURATION    how long a wave may take to confirm (default 5m)

With --canary or --wave the first failure (a push, a failed check, a
rollback, a wave not confirmed within --wait) stops the rollout: later
waves are not pushed to, and a table says which nodes have what.

Exit 0 when every node succeeded, 1 when any failed, 2 on usage errors.

Examples:
  certkeeper push --inventory nodes.toml
  certkeeper push --inventory nodes.toml --only 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a
  certkeeper push --inventory nodes.toml --install --dry-run
  certkeeper push --inventory nodes.toml --canary 2 --wave 10,50
`}

func init() {
	pushCmd.run = withErrors(pushCmd, runPush)
	register(pushCmd)
}

func runPush(ctx context.Context, e *env, args []string) error {
	c := pushCmd
	fs := flags(e, c)
	invPath := fs.String("inventory", "", "inventory TOML file")
	caDir := fs.String("ca-dir", "", "CA directory holding nodes/<id>/")
	concurrency := fs.Int("concurrency", distribute.DefaultConcurrency, "nodes pushed at once")
	only := fs.String("only", "", "comma-separated node ids to push")
	install := fs.Bool("install", false, "write canonical names and modes into target (no agent on the node)")
	dryRun := fs.Bool("dry-run", false, "connect and check; write nothing")
	asJSON := fs.Bool("json", false, "print one JSON report at the end, no progress (docs/json.md)")
	canary := fs.Int("canary", 0, "push to N nodes first and wait until their reports confirm it")
	wave := fs.String("wave", "", "comma-separated wave sizes after the canary (the last repeats; default: the rest at once)")
	wait := fs.Duration("wait", 5*time.Minute, "with --canary/--wave: how long a wave's nodes may take to confirm")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(rest, " "))
	}
	// --ca-dir has a default ($CERTKEEPER_CA_DIR, else the FHS path): only
	// the inventory is for the admin to give.
	if *invPath == "" {
		return usagef("--inventory FILE is required")
	}
	if *caDir == "" {
		return usagef("--ca-dir must not be empty")
	}
	if *concurrency < 1 || *concurrency > 1024 {
		return usagef("--concurrency must be between 1 and 1024")
	}
	_, nodes, err := loadInventory(*invPath, *only)
	if err != nil {
		return err
	}
	dir, err := distribute.ExpandHome(*caDir)
	if err != nil {
		return usagef("%v", err)
	}
	warnRetired(e, dir, nodes)
	if *canary > 0 || *wave != "" {
		if *install || *dryRun {
			return usagef("--canary and --wave need agents on the nodes (their reports confirm each wave): not with --install or --dry-run")
		}
		sizes, err := waveSizes(*wave)
		if err != nil {
			return err
		}
		return stagedPush(ctx, e, nodes, dir, *concurrency, *canary, sizes, *wait, *asJSON)
	}
	p := newProgress(e.stdout, e.stderr, len(nodes))
	done := p.done
	if *asJSON {
		done = nil
	}
	start := time.Now()
	results := distribute.Push(ctx, nodes, distribute.PushOptions{
		CADir: dir, Install: *install, DryRun: *dryRun, Concurrency: *concurrency, Done: done,
	})
	if *asJSON {
		rep := pushReport(results, *dryRun, time.Since(start))
		writeJSON(e, rep)
		if rep.Failed > 0 {
			return exitError(exitFailure)
		}
		return nil
	}
	p.finish()
	// What worked on stdout; what failed, and the summary of a run that
	// failed, on stderr.
	failed := printPushTable(e.stdout, e.stderr, results, *dryRun)
	verb := "pushed"
	if *dryRun {
		verb = "checked (dry run, nothing written)"
	}
	summary := e.stdout
	if failed > 0 {
		summary = e.stderr
	}
	fmt.Fprintf(summary, "%d node(s) %s in %s: %d ok, %d failed\n", len(results), verb, time.Since(start).Round(time.Millisecond), len(results)-failed, failed)
	if failed > 0 {
		return exitError(exitFailure)
	}
	return nil
}

// progress shows a bar on a terminal and one line per node otherwise.
type progress struct {
	w, errw        io.Writer
	tty            bool
	total, n, fail int
}

func newProgress(w, errw io.Writer, total int) *progress {
	p := &progress{w: w, errw: errw, total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.draw()
	}
	return p
}

func (p *progress) done(r distribute.NodeResult) {
	p.n++
	if r.Err != nil {
		p.fail++
	}
	if p.tty {
		p.draw()
		return
	}
	if r.Err != nil {
		fmt.Fprintf(p.errw, "[%d/%d] %s: FAILED: %s\n", p.n, p.total, r.Node.ID, oneLine(r.Err))
		return
	}
	fmt.Fprintf(p.w, "[%d/%d] %s: ok (%s)\n", p.n, p.total, r.Node.ID, r.Took.Round(time.Millisecond))
}

func (p *progress) draw() {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.n * width / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d  ok %d  failed %d", strings.Repeat("#", filled), strings.Repeat("-", width-filled), p.n, p.total, p.n-p.fail, p.fail)
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// printPushTable prints one row per node, those that failed in a table
// of their own on errw, and returns how many failed.
func printPushTable(w, errw io.Writer, results []distribute.NodeResult, dryRun bool) int {
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ft := tabwriter.NewWriter(errw, 0, 0, 2, ' ', 0)
	okRows := 0
	failed := 0
	for _, r := range results {
		hp, _ := r.Node.SSH.HostPort()
		if r.Err != nil {
			if failed == 0 {
				fmt.Fprintln(ft, "NODE\tADDRESS\tRESULT\tTIME\tDETAIL")
			}
			failed++
			fmt.Fprintf(ft, "%s\t%s\tFAILED\t%s\t%s\n", r.Node.ID, hp, r.Took.Round(time.Millisecond), oneLine(r.Err))
			continue
		}
		if okRows == 0 {
			fmt.Fprintln(t, "NODE\tADDRESS\tRESULT\tTIME\tDETAIL")
		}
		okRows++
		what := "wrote"
		if dryRun {
			what = "would write"
		}
		fmt.Fprintf(t, "%s\t%s\tok\t%s\t%s %s into %s\n", r.Node.ID, hp, r.Took.Round(time.Millisecond), what, strings.Join(r.Files, ", "), r.Node.Dir)
	}
	t.Flush()
	ft.Flush()
	return failed
}

type pushJSON struct {
	DryRun bool           `json:"dry_run"`
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`
	TookMS int64          `json:"took_ms"`
	Nodes  []pushNodeJSON `json:"nodes"`
}

type pushNodeJSON struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Result  string   `json:"result"` // "ok" or "failed"
	Error   string   `json:"error,omitempty"`
	Files   []string `json:"files,omitempty"`
	Dir     string   `json:"dir"`
	TookMS  int64    `json:"took_ms"`
}

func pushReport(results []distribute.NodeResult, dryRun bool, took time.Duration) pushJSON {
	out := pushJSON{DryRun: dryRun, TookMS: took.Milliseconds(), Nodes: []pushNodeJSON{}}
	for _, r := range results {
		hp, _ := r.Node.SSH.HostPort()
		n := pushNodeJSON{ID: r.Node.ID, Address: hp, Result: "ok", Files: r.Files, Dir: r.Node.Dir, TookMS: r.Took.Milliseconds()}
		if r.Err != nil {
			n.Result, n.Error, n.Files = "failed", oneLine(r.Err), nil
			out.Failed++
		} else {
			out.OK++
		}
		out.Nodes = append(out.Nodes, n)
	}
	return out
}

// loadInventory reads the inventory and picks the nodes named in only, a
// comma-separated list of ids (all of them when empty).
func loadInventory(path, only string) (*distribute.Inventory, []distribute.Node, error) {
	inv, err := distribute.LoadInventory(path)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	for _, id := range strings.Split(only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	nodes, err := inv.Select(ids)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return inv, nodes, nil
}

// warnRetired says, on stderr, which nodes of the push the CA retired
// (`ca revoke ID`): their published bundle is revoked, and pushing it
// again puts a revoked certificate on the node. A CA directory without
// records (a copy of nodes/ only) says nothing.
func warnRetired(e *env, caDir string, nodes []distribute.Node) {
	ca, err := fleet.LoadCA(caDir)
	if err != nil {
		return
	}
	for _, n := range nodes {
		if r, ok := ca.Nodes[n.ID]; ok && r.Revoked != nil {
			fmt.Fprintf(e.stderr, "certkeeper push: warning: node %s was retired (ca revoke %s, %s): its bundle is revoked; remove it from the inventory, or take it back with `certkeeper ca issue node %s --force`\n",
				n.ID, n.ID, rotate.Stamp(r.Revoked.At), n.ID)
		}
	}
}
