package main

import (
	"bytes"
	"context"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// runIn runs a command in-process, as main would.
func runIn(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &o, stderr: &e}, args)
	return code, o.String(), e.String()
}

// helpCase is one way of asking a command for help, and the command line
// its examples must show.
type helpCase struct {
	args []string
	name string // "install", "ca issue"
}

// helpCases walks the command table: every command and every subcommand
// of a group (ca, fleet), asked with --help, -h and `certkeeper help …`.
func helpCases() []helpCase {
	var out []helpCase
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out,
			helpCase{[]string{n, "--help"}, n},
			helpCase{[]string{n, "-h"}, n},
			helpCase{[]string{"help", n}, n})
	}
	for _, g := range names {
		var subs []string
		for n := range groups[g] {
			subs = append(subs, n)
		}
		sort.Strings(subs)
		for _, n := range subs {
			out = append(out,
				helpCase{[]string{g, n, "--help"}, g + " " + n},
				helpCase{[]string{g, "help", n}, g + " " + n},
				helpCase{[]string{"help", g, n}, g + " " + n})
		}
	}
	return out
}

var exampleHeading = regexp.MustCompile(`(?m)^Examples?:\n`)

// Every command and subcommand answers --help on stdout, once, with exit
// 0: a synopsis ("Usage: certkeeper NAME …") and at least one example
// that runs it.
func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	cases := helpCases()
	if len(cases) < 3*(13+7) {
		t.Fatalf("only %d help cases: is the command table empty?", len(cases))
	}
	for _, hc := range cases {
		t.Run(strings.Join(hc.args, "_"), func(t *testing.T) {
			code, stdout, stderr := runIn(hc.args...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0\nstderr: %s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("help wrote to stderr too:\n%s", stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: certkeeper "+hc.name) {
				t.Errorf("help does not start with the synopsis %q:\n%s", "Usage: certkeeper "+hc.name, stdout)
			}
			if strings.Count(stdout, "Usage: certkeeper "+hc.name) != 1 {
				t.Errorf("the synopsis appears %d times", strings.Count(stdout, "Usage: certkeeper "+hc.name))
			}
			loc := exampleHeading.FindStringIndex(stdout)
			if loc == nil {
				t.Fatalf("no Examples: section:\n%s", stdout)
			}
			examples, _, _ := strings.Cut(stdout[loc[1]:], "\n\n")
			if !strings.Contains(examples, "certkeeper "+hc.name) {
				t.Errorf("no example runs %q:\n%s", "certkeeper "+hc.name, examples)
			}
		})
	}
}

// The top-level help lists every command, and `ca --help` and `fleet
// --help` every subcommand, so nothing is hidden.
func TestHelpListsEverything(t *testing.T) {
	code, top, _ := runIn("help")
	if code != exitOK {
		t.Fatalf("certkeeper help: exit %d", code)
	}
	for n := range commands {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(n) + ` `).MatchString(top) {
			t.Errorf("certkeeper help does not list %s", n)
		}
	}
	if len(groups["ca"]) < 8 || len(groups["fleet"]) < 1 {
		t.Fatalf("groups: %v", groups)
	}
	for g, subs := range groups {
		code, help, _ := runIn(g, "--help")
		if code != exitOK {
			t.Fatalf("certkeeper %s --help: exit %d", g, code)
		}
		for n := range subs {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(n) + ` `).MatchString(help) {
				t.Errorf("certkeeper %s --help does not list %s", g, n)
			}
		}
	}
	// A usage error still goes to stderr, with exit 2.
	if code, stdout, stderr := runIn("verify", "--no-such-flag"); code != exitUsage || stdout != "" || !strings.Contains(stderr, "no-such-flag") {
		t.Errorf("a bad flag: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// --config and --dir have defaults (issue 12): no synopsis presents them
// as required, and no example repeats the default, which the docs dropped.
func TestHelpDoesNotRequireDefaultedFlags(t *testing.T) {
	required := regexp.MustCompile(`--(config FILE|dir DIR|ca-dir DIR)`)
	optional := regexp.MustCompile(`\[[^\[\]]*\]`)
	for _, hc := range helpCases() {
		if hc.args[len(hc.args)-1] != "--help" {
			continue
		}
		_, stdout, _ := runIn(hc.args...)
		synopsis, _, _ := strings.Cut(stdout, "\n\n")
		for _, line := range strings.Split(synopsis, "\n") {
			bare := line
			for optional.MatchString(bare) {
				bare = optional.ReplaceAllString(bare, "")
			}
			if required.MatchString(bare) {
				t.Errorf("%s: the synopsis presents a defaulted flag as required: %q", hc.name, line)
			}
		}
		// Examples only: the forced command of an authorized_keys line
		// names its --dir on purpose (sshd runs it without the env).
		for _, line := range strings.Split(stdout, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "certkeeper ") && !strings.Contains(line, "| certkeeper ") {
				continue
			}
			for _, def := range []string{"--config /etc/certkeeper/certkeeper.toml", "--dir /var/lib/certkeeper/ca", "--ca-dir /var/lib/certkeeper/ca"} {
				if strings.Contains(line, def) {
					t.Errorf("%s: an example repeats the default %q: %q", hc.name, def, line)
				}
			}
		}
	}
}
