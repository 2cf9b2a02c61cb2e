// Package demo runs certkeeper's whole job on one machine, on loopback,
// with no set-up and no root: `certkeeper demo`. It starts an embedded
// admin host (an SSH/SFTP server with its own host key, in this process),
// a cluster CA (package authority), and three nodes, each a directory that
// stands for the node's file system, with a real `certkeeper agent`
// process and a daemon serving mutual TLS that the agent reloads. Then it
// shows, step by step: issuing, a push to one node, a pull by another, a
// drift repair, a bad bundle rejected, and short-lived certificates
// renewing (by push, by pull and by CSR) with one reload each, with a live
// status table. Everything it starts is stopped, and its directory
// removed, when it ends, fails or is interrupted.
//
// The demo checks what it shows: every step reports success or failure,
// and Run's Summary counts the failures.
package demo

import (
	"fmt"
	"strings"
	"time"
)

// DefaultLifetime is how long the demo's node certificates live: long
// enough for the first steps to finish before any renewal, short enough to
// watch every node renew within half a minute.
const DefaultLifetime = 30 * time.Second

// Options shape a demo run.
type Options struct {
	// Executable is the certkeeper binary that runs the agents, the
	// daemons and the admin host's forced `ca sign`; "" means this
	// process's own executable.
	Executable string
	// TempDir is where the demo makes its directory; "" means
	// os.TempDir().
	TempDir string
	// Keep leaves the directory after the demo, to look at.
	Keep bool
	// Lifetime of the node certificates; 0 means DefaultLifetime.
	Lifetime time.Duration
	// Report receives the narration; nil discards it.
	Report Reporter
}

// Reporter receives what the demo says. Calls come from one goroutine.
type Reporter interface {
	// Section starts a part of the demo ("Issue", "Push to node1").
	Section(title string)
	// Note explains what comes next; it may hold several lines.
	Note(text string)
	// Step reports one result: ok, or a failure with what went wrong.
	Step(ok bool, text string)
	// Status shows the nodes' state, again and again while certificates
	// renew; final is set on the last call of a series.
	Status(rows []Row, now time.Time, final bool)
}

// Summary is how a run went.
type Summary struct {
	// Dir is the demo's directory; it is gone unless Options.Keep.
	Dir string
	// Steps and Failed count the steps reported, and those that failed.
	Steps, Failed int
	// Interrupted: the context ended (Ctrl-C) before the demo did.
	Interrupted bool
	Took        time.Duration
}

// OK reports whether every step succeeded and the demo ran to its end.
func (s Summary) OK() bool { return s.Failed == 0 && !s.Interrupted && s.Steps > 0 }

// Row is one node in the status table.
type Row struct {
	Node, Layout string
	// RenewsBy is how renewed certificates reach the node: push, pull or
	// csr.
	RenewsBy string
	// Serial is the live certificate's serial (lower-case hex), NotAfter
	// its expiry, RenewAt when the agent's renewal window opens.
	Serial            string
	NotAfter, RenewAt time.Time
	// Installs and Reloads are the agent's counters.
	Installs, Reloads uint64
	// DaemonSerial is the serial the node's daemon serves, as a
	// mutual-TLS client sees it, and DaemonReloads how often the daemon
	// re-read its files; DaemonErr says why the daemon could not be asked.
	DaemonSerial  string
	DaemonReloads int
	DaemonErr     string
}

// Table renders rows as aligned lines, a header first, with times as
// seconds from now.
func Table(rows []Row, now time.Time) []string {
	cells := [][]string{{"NODE", "LAYOUT", "RENEWS BY", "SERIAL", "EXPIRES IN", "WINDOW IN", "INSTALLS", "RELOADS", "DAEMON SERVES", "DAEMON RELOADS"}}
	for _, r := range rows {
		daemon, dreloads := short(r.DaemonSerial), fmt.Sprint(r.DaemonReloads)
		switch {
		case r.DaemonErr != "":
			daemon, dreloads = "(down)", "-"
		case r.DaemonSerial == "":
			daemon, dreloads = "-", "-"
		}
		cells = append(cells, []string{r.Node, r.Layout, r.RenewsBy, short(r.Serial), until(r.NotAfter, now), until(r.RenewAt, now),
			fmt.Sprint(r.Installs), fmt.Sprint(r.Reloads), daemon, dreloads})
	}
	width := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	out := make([]string, 0, len(cells))
	for _, row := range cells {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))))
			}
		}
		out = append(out, b.String())
	}
	return out
}

// textf formats text that is not an error message: narration, a config
// file. (Error messages are made with fmt.Errorf, and docs/troubleshooting.md
// explains each.)
func textf(pattern string, a ...any) string { return fmt.Sprintf(pattern, a...) }

// short cuts a serial to its first 8 hex digits: enough to tell the
// demo's certificates apart at a glance.
func short(serial string) string {
	switch {
	case serial == "":
		return "-"
	case len(serial) > 8:
		return serial[:8] + "…"
	}
	return serial
}

// until renders t as seconds from now ("12.3s"), "due" once past, or "-"
// when unknown.
func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "due"
	}
	return textf("%.1fs", d.Seconds())
}

// NormalizeSerial writes a serial as the demo compares them: lower-case
// hex without colons or leading zeros ("0A:BC" and "abc" are the same).
func NormalizeSerial(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "0"
	}
	return s
}
