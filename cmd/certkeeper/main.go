// Command certkeeper keeps the TLS certificates of cluster nodes in order:
// a node agent that installs, watches, renews and reloads, and admin tools
// for a cluster CA and pushing bundles over SSH. This package wires flags
// to the packages that do the work; it holds no logic of its own.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/certkeeper/certkeeper/platform"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
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
	run     func(ctx context.Context, env *env, args []string) int
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// env carries the process's streams so tests can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		topUsage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		if len(args) > 2 && args[1] == "ca" {
			// certkeeper help ca issue
			return commands["ca"].run(ctx, e, []string{"help", args[2]})
		}
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fmt.Fprint(e.stdout, c.usage)
				return exitOK
			}
		}
		topUsage(e.stdout)
		return exitOK
	case "-v", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.stderr, "certkeeper: unknown command %q\n\n", name)
		topUsage(e.stderr)
		return exitUsage
	}
	return c.run(ctx, e, args[1:])
}

func topUsage(w io.Writer) {
	fmt.Fprint(w, `certkeeper keeps the TLS certificates of cluster nodes in order.

Usage: certkeeper COMMAND [flags] [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "\nRun `certkeeper COMMAND --help` for a command's flags and examples.\n")
}

// flags builds a flag set whose errors and help go where the command's do.
func flags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("certkeeper "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), c.usage)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses flags anywhere among the arguments (`ca issue node ID --dns
// X` as well as `ca issue --dns X node ID`) and returns the positional ones.
// Everything after "--" is positional. It returns the exit code to use
// when parsing ends the command (help, or a usage error).
func parse(e *env, fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos, rest []string
	if i := indexOf(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	for {
		// The flag package prints help itself before it reports ErrHelp;
		// hold what it prints, so help asked for goes to stdout, once, and
		// a usage error to stderr.
		var msg bytes.Buffer
		fs.SetOutput(&msg)
		err := fs.Parse(args)
		fs.SetOutput(e.stderr)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.stdout)
				fs.Usage()
				return nil, exitOK, false
			}
			e.stderr.Write(msg.Bytes())
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	return append(pos, rest...), 0, true
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// usageError reports a usage mistake and returns exit code 2.
func usageError(e *env, c *command, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "certkeeper %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(e.stderr, "Run `certkeeper %s --help` for usage.\n", c.name)
	return exitUsage
}

// failure reports an error and returns exit code 1.
func failure(e *env, c *command, err error) int {
	fmt.Fprintf(e.stderr, "certkeeper %s: %v\n", c.name, err)
	return exitFailure
}

type platformResult = platform.ReloadResult
