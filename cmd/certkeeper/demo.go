package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/certkeeper/certkeeper/demo"
)

var demoCmd = &command{name: "demo", summary: "the whole job on this machine, on loopback: issue, push, pull, repair, reject, renew",
	usage: `Usage: certkeeper demo [--keep] [--non-interactive]

Runs certkeeper's whole job on this machine in under a minute, with no
set-up and no root, on 127.0.0.1 only, in a new temporary directory:

  - an admin host: a cluster CA (what ` + "`certkeeper ca`" + ` does) and an SSH
    server embedded in this process, with its own host key;
  - three nodes, each a directory standing for its file system, with a real
    ` + "`certkeeper agent`" + ` process and a daemon serving mutual TLS that the
    agent reloads: node1 (flocker-node layout) gets its bundles by push,
    node2 (mesos) pulls them, node3 (glow) renews by certificate request
    (CSR) through the admin host's forced ` + "`certkeeper ca sign`" + `;
  - then a drift repair (the key chmod-ed 0644 and put back), a bad bundle
    rejected with its reason, and 30-second certificates renewing with one
    reload each, with a live status table.

Every step prints "ok" or "FAIL" with what it saw; the exit status is 1 if
any failed. Everything the demo starts is stopped, and its directory
removed, when it ends, fails or is interrupted (Ctrl-C).

  --keep              leave the directory to look at (its path is printed)
  --non-interactive   plain lines, no colours and no table refreshed in
                      place (the default when the output is not a terminal)

Examples:
  certkeeper demo
  certkeeper demo --keep
  certkeeper demo --non-interactive > demo.log
`}

func init() {
	demoCmd.run = withErrors(demoCmd, runDemo)
	register(demoCmd)
}

func runDemo(ctx context.Context, e *env, args []string) error {
	// The demo's stand-in daemon: a process of this binary, so the demo
	// needs nothing but itself. Not for use on its own.
	if len(args) > 0 && args[0] == "daemon" {
		return exitCodeOf(demo.Daemon(ctx, args[1:], e.stderr))
	}
	fs := flags(e, demoCmd)
	keep := fs.Bool("keep", false, "leave the demo's directory to look at")
	plain := fs.Bool("non-interactive", false, "plain lines: no colours, no table refreshed in place")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	out := newDemoOutput(e.stdout, *plain)
	fmt.Fprintln(e.stdout, "certkeeper demo: the whole job on this machine, on 127.0.0.1 only; Ctrl-C stops it and cleans up.")
	sum, err := demo.Run(ctx, demo.Options{Keep: *keep, Report: out})
	if err != nil {
		return err
	}
	out.clear()
	switch {
	case sum.Interrupted:
		fmt.Fprintf(e.stderr, "certkeeper demo: interrupted after %s; everything it started is stopped\n", sum.Took.Round(100*time.Millisecond))
		return exitError(exitFailure)
	case sum.Failed > 0:
		fmt.Fprintf(e.stdout, "\ndemo: %d of %d steps FAILED in %s\n", sum.Failed, sum.Steps, sum.Took.Round(100*time.Millisecond))
		return exitError(exitFailure)
	}
	fmt.Fprintf(e.stdout, "\ndemo: all %d steps ok in %s\n", sum.Steps, sum.Took.Round(100*time.Millisecond))
	if *keep {
		fmt.Fprintf(e.stdout, "kept: %s\n", sum.Dir)
	}
	return nil
}

// demoOutput prints the demo's narration. On a terminal the status table
// is redrawn in place, and step results are coloured; otherwise every line
// is plain and the table is printed when it first appears and when it is
// final.
type demoOutput struct {
	w     io.Writer
	live  bool
	color bool // live, and NO_COLOR not set
	fd    int  // the terminal, for its width
	shown int  // lines of the table now on screen (live only)
	rows  []demo.Row
	now   time.Time
	table bool // a table series is running
}

// newDemoOutput decides how the demo prints to w: live (the table redrawn
// in place) only on a terminal and without --non-interactive, coloured
// only when live and NO_COLOR (https://no-color.org) is not set; a pipe
// or a file gets plain lines without any escape sequence.
func newDemoOutput(w io.Writer, plain bool) *demoOutput {
	out := &demoOutput{w: w, fd: -1}
	if f, ok := w.(*os.File); ok && !plain && term.IsTerminal(int(f.Fd())) {
		out.live, out.fd = true, int(f.Fd())
		// NO_COLOR: the table still redraws in place, without colours.
		out.color = !noColor()
	}
	return out
}

// clear removes the table from the screen, to print above it.
func (o *demoOutput) clear() {
	if o.shown > 0 {
		fmt.Fprintf(o.w, "\x1b[%dA\r\x1b[J", o.shown)
		o.shown = 0
	}
}

// redraw puts the table back under what was printed.
func (o *demoOutput) redraw() {
	if o.live && o.table {
		o.draw()
	}
}

// draw prints the table, each line cut to the terminal's width: a line
// that wrapped would take two rows, and clear would leave one behind.
func (o *demoOutput) draw() {
	width := 0
	if w, _, err := term.GetSize(o.fd); err == nil && w > 20 {
		width = w - 1
	}
	lines := demo.Table(o.rows, o.now)
	for _, l := range lines {
		l = "  " + l
		if r := []rune(l); width > 0 && len(r) > width {
			l = string(r[:width])
		}
		fmt.Fprintln(o.w, l)
	}
	o.shown = len(lines)
}

func (o *demoOutput) Section(title string) {
	o.clear()
	if o.color {
		fmt.Fprintf(o.w, "\n\x1b[1m== %s\x1b[0m\n", title)
	} else {
		fmt.Fprintf(o.w, "\n== %s\n", title)
	}
	o.redraw()
}

func (o *demoOutput) Note(text string) {
	o.clear()
	for _, l := range strings.Split(text, "\n") {
		fmt.Fprintln(o.w, "  "+l)
	}
	o.redraw()
}

// Step prints "  ok    text" or "  FAIL  text", continuation lines
// indented under the text: the test (and a reader) finds every result at
// the start of a line.
func (o *demoOutput) Step(ok bool, text string) {
	o.clear()
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	if o.color {
		if ok {
			mark = "\x1b[32m" + mark + "\x1b[0m"
		} else {
			mark = "\x1b[31;1m" + mark + "\x1b[0m"
		}
	}
	lines := strings.Split(text, "\n")
	fmt.Fprintf(o.w, "  %s  %s\n", mark, lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(o.w, "        %s\n", l)
	}
	o.redraw()
}

func (o *demoOutput) Status(rows []demo.Row, now time.Time, final bool) {
	first := !o.table
	o.rows, o.now, o.table = rows, now, !final
	if o.live {
		o.clear()
		o.draw()
		if final {
			o.shown = 0
		}
		return
	}
	if first || final {
		for _, l := range demo.Table(rows, now) {
			fmt.Fprintln(o.w, "  "+l)
		}
	}
}
