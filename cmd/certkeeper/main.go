// Command certkeeper keeps the TLS certificates of cluster nodes in order:
// a node agent that installs, watches, renews and reloads, and admin tools
// for a cluster CA and pushing bundles over SSH. This package wires flags
// to the packages that do the work; it holds no logic of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certkeeper/certkeeper/platform"
)

// Exit codes (DESIGN.md): 0 success, 1 failure, 2 usage. `check` has its
// own (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string // synopsis, then examples
	// run is the command's body (withErrors adapts one that returns an
	// error); nil for a group of subcommands (ca), which cobra dispatches.
	run    func(ctx context.Context, env *env, args []string) int
	hidden bool
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// groups are the commands that hold subcommands (`certkeeper ca issue`,
// `certkeeper fleet status`): the group's name, then its subcommands by
// their own name. A subcommand's command is named "GROUP SUB".
var groups = map[string]map[string]*command{}

// registerSub registers a subcommand of group, a command registered on
// its own.
func registerSub(group string, c *command) {
	if groups[group] == nil {
		groups[group] = map[string]*command{}
	}
	groups[group][strings.TrimPrefix(c.name, group+" ")] = c
}

// env carries the process's streams so tests can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// describe, when set, makes parse hand over the command's flags and
	// end the command before it does anything: how the cobra tree learns
	// each command's flags for man pages and completion.
	describe func(*pflag.FlagSet)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// exitError ends a command with an exit code; what the command had to say
// it has already said.
type exitError int

func (c exitError) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// errUsage is a usage mistake (exit 2): an unknown command, flag or a
// missing argument. The message is printed with a pointer to --help.
type errUsage struct {
	cmd string // "install", "ca issue"; "" for the top level
	msg string
}

func (u *errUsage) Error() string { return u.msg }

// exitCode maps what a command returned to the process's exit code.
func exitCode(e *env, err error) int {
	if err == nil {
		return exitOK
	}
	var code exitError
	if errors.As(err, &code) {
		return int(code)
	}
	var u *errUsage
	if errors.As(err, &u) {
		printUsageError(e, u.cmd, u.msg)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "certkeeper: %v\n", err)
	return exitFailure
}

func printUsageError(e *env, cmd, msg string) {
	prefix, help := "certkeeper", "certkeeper --help"
	if cmd != "" {
		prefix, help = "certkeeper "+cmd, "certkeeper "+cmd+" --help"
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", prefix, strings.TrimRight(msg, "\n"))
	fmt.Fprintf(e.stderr, "Run `%s` for usage.\n", help)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		topUsage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-v", "--version":
		args = append([]string{"version"}, args[1:]...)
	case "-h", "-help", "--help":
		if len(args) == 1 {
			topUsage(e.stdout)
			return exitOK
		}
	}
	root := newRoot(ctx, e, strings.HasPrefix(args[0], "__complete"), args...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var code exitError
	var u *errUsage
	if err != nil && !errors.As(err, &code) && !errors.As(err, &u) && !ranCommand(root) {
		// cobra's own errors (an unknown command, a bad argument count)
		// come before any command ran: usage mistakes.
		msg := cobraFor.ReplaceAllString(err.Error(), "")
		if m, s, ok := strings.Cut(msg, "\n\nDid you mean this?\n"); ok {
			msg = m + "\nDid you mean " + strings.Join(strings.Fields(s), " or ") + "?"
		}
		err = &errUsage{msg: strings.TrimSpace(msg)}
	}
	return exitCode(e, err)
}

// cobraFor is the ` for "certkeeper …"` cobra adds to its errors.
var cobraFor = regexp.MustCompile(` for "certkeeper[^"]*"`)

// newRoot builds the cobra command tree from the command table. The
// commands parse their own flags (parse, below); cobra dispatches, suggests
// mistyped commands, answers help, and generates completion and man pages.
// complete makes cobra know and parse the flags itself, as completion and
// the man pages need.
func newRoot(ctx context.Context, e *env, complete bool, args ...string) *cobra.Command {
	root := &cobra.Command{
		Use:                        "certkeeper",
		Short:                      "keep the TLS certificates of cluster nodes in order",
		Long:                       topUsageText(),
		SilenceErrors:              true,
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &errUsage{msg: fmt.Sprintf("unknown command %q", args[0])}
			}
			topUsage(e.stderr)
			return exitError(exitUsage)
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &errUsage{cmd: strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), "certkeeper"), " "), msg: err.Error()}
	})
	leaves := map[*cobra.Command]*command{}
	leaf := func(c *command, use string) *cobra.Command {
		cc := &cobra.Command{
			Use:                use,
			Short:              c.summary,
			Long:               c.usage,
			Hidden:             c.hidden,
			DisableFlagParsing: !complete,
			RunE: func(cmd *cobra.Command, args []string) error {
				markRan(cmd)
				if code := c.run(cmd.Context(), e, args); code != exitOK {
					return exitError(code)
				}
				return nil
			},
		}
		// Only completion and gendocs need cobra to know the flags; the
		// commands parse their own.
		if complete {
			if pf := describeFlags(ctx, c); pf != nil {
				cc.Flags().AddFlagSet(pf)
			}
			addCompletion(cc, c)
		}
		leaves[cc] = c
		return cc
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if subs, ok := groups[n]; ok {
			root.AddCommand(group(e, commands[n], subs, leaf))
			continue
		}
		root.AddCommand(leaf(commands[n], n))
	}
	root.AddCommand(gendocsCommand(e))
	// `certkeeper completion` without a shell is a usage error, not help.
	root.InitDefaultCompletionCmd(args...)
	for _, cc := range root.Commands() {
		if cc.Name() == "completion" {
			// cobra's NoArgs would call a mistyped shell an unknown
			// command; RunE names it.
			cc.Args = cobra.ArbitraryArgs
			for _, sh := range cc.Commands() {
				name := sh.Name()
				sh.Args = func(_ *cobra.Command, args []string) error {
					if len(args) > 0 {
						return &errUsage{cmd: "completion " + name, msg: fmt.Sprintf("unexpected arguments: %s", strings.Join(args, " "))}
					}
					return nil
				}
			}
			cc.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return &errUsage{cmd: "completion", msg: fmt.Sprintf("unknown shell %q: give bash, zsh, fish or powershell", args[0])}
				}
				return &errUsage{cmd: "completion", msg: "give a shell: bash, zsh, fish or powershell"}
			}
		}
	}
	// `certkeeper help TOPIC`: cobra's own prints "Unknown help topic" and
	// its usage, exit 0, for a topic that is no command; here that is a
	// usage error with a suggestion, like a mistyped command.
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			cmd, _, err := root.Find(args)
			if err != nil || cmd == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					out = append(out, sub.Name())
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			markRan(c)
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				msg := fmt.Sprintf("unknown command %q", strings.Join(args, " "))
				parent, word := root, ""
				if len(args) > 0 {
					word = args[len(args)-1]
					if p, _, err := root.Find(args[:len(args)-1]); err == nil && p != nil {
						parent = p
					}
				}
				if sug := parent.SuggestionsFor(word); len(sug) > 0 {
					prefix := strings.TrimPrefix(strings.TrimPrefix(parent.CommandPath(), "certkeeper"), " ")
					for i := range sug {
						sug[i] = strings.TrimSpace(prefix + " " + sug[i])
					}
					msg += "\nDid you mean " + strings.Join(sug, " or ") + "?"
				}
				return &errUsage{msg: msg}
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	})
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		switch c, ok := leaves[cmd]; {
		case cmd == root:
			topUsage(e.stdout)
		case ok:
			c.run(ctx, e, []string{"--help"})
		case cmd.Parent() == root && groups[cmd.Name()] != nil:
			fmt.Fprint(e.stdout, commands[cmd.Name()].usage)
		default:
			defaultHelp(cmd, args)
		}
	})
	return root
}

// markRan notes on the root that a command's body ran, so its errors are
// its own and not cobra's usage errors.
func markRan(cmd *cobra.Command) {
	if cmd.Root().Annotations == nil {
		cmd.Root().Annotations = map[string]string{}
	}
	cmd.Root().Annotations["ran"] = "yes"
}

func ranCommand(root *cobra.Command) bool { return root.Annotations["ran"] == "yes" }

// group is a command that holds subcommands, `certkeeper ca` or
// `certkeeper fleet`: alone it prints its usage (exit 2); `GROUP help SUB`
// is SUB's help; an unknown subcommand is a usage error with a suggestion.
func group(e *env, g *command, subs map[string]*command, leaf func(*command, string) *cobra.Command) *cobra.Command {
	gc := &cobra.Command{
		Use:                        g.name,
		Short:                      g.summary,
		Long:                       g.usage,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprint(e.stderr, g.usage)
				return exitError(exitUsage)
			}
			if args[0] == "help" {
				if len(args) > 1 {
					if c, ok := subs[args[1]]; ok {
						return exitCodeOf(c.run(cmd.Context(), e, []string{"--help"}))
					}
				}
				fmt.Fprint(e.stdout, g.usage)
				return nil
			}
			msg := fmt.Sprintf("unknown subcommand %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\nDid you mean " + strings.Join(s, " or ") + "?"
			}
			return &errUsage{cmd: g.name, msg: msg}
		},
	}
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		gc.AddCommand(leaf(subs[n], n))
	}
	return gc
}

func exitCodeOf(code int) error {
	if code == exitOK {
		return nil
	}
	return exitError(code)
}

// describeFlags runs a command's body far enough to learn its flags.
func describeFlags(ctx context.Context, c *command) *pflag.FlagSet {
	var got *pflag.FlagSet
	d := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		describe: func(pf *pflag.FlagSet) { got = pf }}
	c.run(ctx, d, nil)
	return got
}

func topUsageText() string {
	var b strings.Builder
	topUsage(&b)
	return b.String()
}

func topUsage(w io.Writer) {
	fmt.Fprint(w, `certkeeper keeps the TLS certificates of cluster nodes in order.

Usage: certkeeper COMMAND [flags] [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		if !commands[n].hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "  %-12s %s\n", "completion", "print a bash, zsh, fish or powershell completion script")
	fmt.Fprint(w, `
--config defaults to `+platform.DefaultConfigPath()+` (or $CERTKEEPER_CONFIG),
--dir and --ca-dir to `+defaultCADir()+` (or $CERTKEEPER_CA_DIR).

Run `+"`certkeeper COMMAND --help`"+` for a command's flags and examples.
`)
}

// Defaults of the flags every command shares (DESIGN.md).
const (
	envConfig = "CERTKEEPER_CONFIG"
	envCADir  = "CERTKEEPER_CA_DIR"
)

func defaultCADir() string { return platform.NativeDir("/var/lib/certkeeper/ca") }

// flagDefault is the default of a shared flag: the environment's, else the
// built-in one. Only flags a command leaves without a default get one.
func flagDefault(name string) (string, bool) {
	switch name {
	case "config":
		if v := os.Getenv(envConfig); v != "" {
			return v, true
		}
		return platform.DefaultConfigPath(), true
	case "dir", "ca-dir":
		if v := os.Getenv(envCADir); v != "" {
			return v, true
		}
		return defaultCADir(), true
	}
	return "", false
}

// flags builds a flag set for a command's body to define its flags on;
// parse reads them the GNU way (--flag) with pflag.
func flags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("certkeeper "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// goFlag carries a Go flag into pflag: setting it sets it in the Go flag
// set too, so fs.Visit sees what was given.
type goFlag struct {
	fs *flag.FlagSet
	f  *flag.Flag
}

func (g goFlag) Set(v string) error { return g.fs.Set(g.f.Name, v) }
func (g goFlag) String() string     { return g.f.Value.String() }
func (g goFlag) Type() string {
	if b, ok := g.f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "bool"
	}
	t := fmt.Sprintf("%T", g.f.Value)
	switch {
	case strings.Contains(t, "int"), strings.Contains(t, "uint"):
		return "int"
	case strings.Contains(t, "duration"):
		return "duration"
	case strings.Contains(t, "List"):
		return "strings"
	}
	return "string"
}

// pflags turns a command's Go flag set into pflag's, with the shared
// defaults filled in.
func pflags(fs *flag.FlagSet) *pflag.FlagSet {
	pf := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	pf.SetOutput(io.Discard)
	pf.Usage = func() {}
	pf.SortFlags = true
	fs.VisitAll(func(f *flag.Flag) {
		if f.Value.String() == "" {
			if d, ok := flagDefault(f.Name); ok {
				f.Value.Set(d)
				f.DefValue = d
			}
		}
		pfl := &pflag.Flag{Name: f.Name, Usage: f.Usage, Value: goFlag{fs, f}, DefValue: f.Value.String()}
		if pfl.Value.Type() == "bool" {
			pfl.NoOptDefVal = "true"
		}
		pf.AddFlag(pfl)
	})
	return pf
}

// parse parses flags anywhere among the arguments (`ca issue node ID --dns
// X` as well as `ca issue --dns X node ID`) and returns the positional ones.
// Everything after "--" is positional. When parsing ends the command
// (help, or a usage error, printed already) it returns an exitError with
// the code to exit with.
func parse(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	pf := pflags(fs)
	if e.describe != nil {
		e.describe(pf)
		return nil, exitError(exitOK)
	}
	name := strings.TrimPrefix(fs.Name(), "certkeeper ")
	// -config, the Go flag spelling older scripts use, still works.
	args = append([]string(nil), args...)
	for i, a := range args {
		if a == "--" {
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			n, _, _ := strings.Cut(a[1:], "=")
			if len(n) > 1 && (pf.Lookup(n) != nil || n == "help") {
				args[i] = "-" + a
			}
		}
	}
	if err := pf.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(e.stdout, commandUsage(name, pf))
			return nil, exitError(exitOK)
		}
		msg := err.Error()
		if s := suggestFlag(pf, err); s != "" {
			msg += "\nDid you mean --" + s + "?"
		}
		printUsageError(e, name, msg)
		return nil, exitError(exitUsage)
	}
	return pf.Args(), nil
}

// commandUsage is a command's help: its text, then its flags.
func commandUsage(name string, pf *pflag.FlagSet) string {
	usage := ""
	if c, ok := commands[name]; ok {
		usage = c.usage
	} else if g, sub, ok := strings.Cut(name, " "); ok && groups[g][sub] != nil {
		usage = groups[g][sub].usage
	}
	if pf.HasFlags() {
		usage += "\nFlags:\n" + pf.FlagUsages()
	}
	return usage
}

// suggestFlag names the flag an unknown one was probably meant to be.
func suggestFlag(pf *pflag.FlagSet, err error) string {
	msg := err.Error()
	const p = "unknown flag: --"
	if !strings.HasPrefix(msg, p) {
		return ""
	}
	bad := strings.TrimPrefix(msg, p)
	best, bestD := "", 3
	pf.VisitAll(func(f *pflag.Flag) {
		d := levenshtein(bad, f.Name)
		if strings.HasPrefix(f.Name, bad) && d > 0 {
			d = 1
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// levenshtein is the edit distance, a swap of two neighbours counting one
// (--dsn is --dns, not --dir).
func levenshtein(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// usagef is a usage mistake: the command prints it with a pointer to its
// --help and exits 2.
func usagef(format string, args ...any) error {
	return &errUsage{msg: fmt.Sprintf(format, args...)}
}

// withErrors adapts a command that returns an error to the command table:
// nil is exit 0; a usage error (usagef) is printed with the command's name
// and a pointer to --help, exit 2; an exitError is its code, said already;
// any other error is printed as "certkeeper NAME: error", exit 1.
func withErrors(c *command, f func(context.Context, *env, []string) error) func(context.Context, *env, []string) int {
	return func(ctx context.Context, e *env, args []string) int {
		err := f(ctx, e, args)
		var code exitError
		var u *errUsage
		switch {
		case err == nil:
			return exitOK
		case errors.As(err, &code):
			return int(code)
		case errors.As(err, &u):
			printUsageError(e, c.name, u.msg)
			return exitUsage
		}
		fmt.Fprintf(e.stderr, "certkeeper %s: %v\n", c.name, err)
		return exitFailure
	}
}

type platformResult = platform.ReloadResult
