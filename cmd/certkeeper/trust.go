package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/certkeeper/certkeeper/distribute"
)

var trustCmd = &command{name: "trust", summary: "fetch an SSH host key, show its fingerprint, and pin it in known_hosts",
	usage: `Usage: certkeeper trust HOST[:PORT] --known-hosts FILE [--yes] [--timeout 30s]
       certkeeper trust --inventory FILE [--only ID,...] [--yes] [--concurrency N]

Connects to HOST (port 22 unless given), prints the SHA256 fingerprint of
the host key it presents, and appends it to FILE only when you confirm by
typing "yes" (or give --yes). Compare the fingerprint with the host's own
first: on the host, ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub.

certkeeper always verifies host keys against known_hosts; this is how a key
gets there. A host already pinned with the same key is left as it is. A
host pinned with a different key is refused loudly, with both fingerprints:
remove the old entry yourself (ssh-keygen -R HOST -f FILE) if you know why
it changed. Hashed entries and [host]:port entries are understood.

With --inventory, every node of a push inventory at once: the host keys
are fetched in parallel, all fingerprints shown in one table (new, already
pinned, CHANGED, or why it could not be fetched), and the new ones pinned
in each node's known_hosts after one "yes" (or --yes). Changed keys are
never replaced; they are reported, with the exit code 1.

Exit 0 when the key is pinned (now or before), 1 when not.

Examples:
  certkeeper trust admin.example.com --known-hosts /etc/certkeeper/known_hosts
  certkeeper trust 10.0.0.5:2222 --known-hosts ~/.ssh/known_hosts --yes
  certkeeper trust --inventory /etc/certkeeper/nodes.toml
`}

func init() {
	trustCmd.run = withErrors(trustCmd, runTrust)
	register(trustCmd)
}

func runTrust(ctx context.Context, e *env, args []string) error {
	c := trustCmd
	fs := flags(e, c)
	knownHosts := fs.String("known-hosts", "", "known_hosts file to pin the key in")
	yes := fs.Bool("yes", false, "pin without asking")
	timeout := fs.Duration("timeout", distribute.DefaultTimeout, "timeout for the connection and handshake")
	inventory := fs.String("inventory", "", "pin every node of this push inventory (in each node's known_hosts)")
	only := fs.String("only", "", "with --inventory: comma-separated node ids")
	concurrency := fs.Int("concurrency", distribute.DefaultConcurrency, "with --inventory: hosts asked at once")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if *inventory != "" {
		if len(rest) > 0 || *knownHosts != "" {
			return usagef("--inventory takes no HOST and no --known-hosts (each node's known_hosts is the inventory's)")
		}
		if *concurrency < 1 || *concurrency > 1024 {
			return usagef("--concurrency must be between 1 and 1024")
		}
		return trustInventory(ctx, e, *inventory, *only, *concurrency, *timeout, *yes)
	}
	if len(rest) != 1 {
		return usagef("give exactly one HOST[:PORT]")
	}
	if *knownHosts == "" {
		return usagef("--known-hosts FILE is required")
	}
	path, err := distribute.ExpandHome(*knownHosts)
	if err != nil {
		return err
	}
	hp, key, err := distribute.FetchHostKey(ctx, rest[0], 22, path, *timeout)
	if err != nil {
		return err
	}
	fp := ssh.FingerprintSHA256(key)
	fmt.Fprintf(e.stdout, "%s presents a %s host key\n  fingerprint %s\n", hp, key.Type(), fp)
	state, pinned, err := distribute.CheckPin(path, hp, key)
	if err != nil {
		return err
	}
	switch state {
	case distribute.Pinned:
		fmt.Fprintf(e.stdout, "already pinned in %s; nothing to do\n", path)
		return nil
	case distribute.Changed:
		return &distribute.HostKeyChangedError{Host: hp, Offered: key, Pinned: pinned}
	}
	if !*yes {
		fmt.Fprintf(e.stdout, "Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on %s).\n", keyFileType(key), hostOnly(hp))
		fmt.Fprintf(e.stdout, "Pin this key for %s in %s? Type \"yes\" to pin: ", hp, path)
		ok := confirmed(e.stdin)
		endPrompt(e)
		if !ok {
			fmt.Fprintf(e.stderr, "certkeeper trust: not pinned (only \"yes\" pins)\n")
			return exitError(exitFailure)
		}
	}
	if err := distribute.Pin(path, hp, key); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "pinned %s %s %s in %s\n", hp, key.Type(), fp, path)
	return nil
}

// endPrompt ends the prompt's line when the answer was not typed on a
// terminal (which echoes it with its newline): piped in, or none.
func endPrompt(e *env) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return
	}
	fmt.Fprintln(e.stdout)
}

// confirmed reads one line and accepts only "yes".
func confirmed(r io.Reader) bool {
	if r == nil {
		return false
	}
	line, err := bufio.NewReader(io.LimitReader(r, 256)).ReadString('\n')
	if err != nil && err != io.EOF {
		return false
	}
	return strings.TrimSpace(line) == "yes"
}

func keyFileType(k ssh.PublicKey) string {
	switch {
	case strings.HasPrefix(k.Type(), "ecdsa"):
		return "ecdsa"
	case strings.Contains(k.Type(), "rsa"):
		return "rsa"
	}
	return "ed25519"
}

func hostOnly(hp string) string {
	if i := strings.LastIndex(hp, ":"); i > 0 {
		return strings.Trim(hp[:i], "[]")
	}
	return hp
}

// trustInventory is trust --inventory: one table of every node's host
// key, then one confirmation for the new ones.
func trustInventory(ctx context.Context, e *env, invPath, only string, concurrency int, timeout time.Duration, yes bool) error {
	_, nodes, err := loadInventory(invPath, only)
	if err != nil {
		return err
	}
	keys := distribute.FetchHostKeys(ctx, nodes, concurrency, timeout)
	t := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "NODE\tADDRESS\tKEY\tFINGERPRINT\tSTATE")
	var fresh, already, changed, failed int
	files := map[string]bool{}
	for _, h := range keys {
		ids := strings.Join(h.IDs, ",")
		switch {
		case h.Err != nil:
			failed++
			fmt.Fprintf(e.stderr, "certkeeper trust: %s (%s): %s\n", ids, h.HostPort, oneLine(h.Err))
			fmt.Fprintf(t, "%s\t%s\t-\t-\tFAILED\n", ids, h.HostPort)
		case h.State == distribute.Pinned:
			already++
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\tpinned\n", ids, h.HostPort, h.Key.Type(), ssh.FingerprintSHA256(h.Key))
		case h.State == distribute.Changed:
			changed++
			fmt.Fprintf(e.stderr, "certkeeper trust: %v\n", &distribute.HostKeyChangedError{Host: h.HostPort, Offered: h.Key, Pinned: h.Pinned})
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\tCHANGED\n", ids, h.HostPort, h.Key.Type(), ssh.FingerprintSHA256(h.Key))
		default:
			fresh++
			files[h.KnownHosts] = true
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\tnew\n", ids, h.HostPort, h.Key.Type(), ssh.FingerprintSHA256(h.Key))
		}
	}
	t.Flush()
	pinnedNow := 0
	if fresh > 0 {
		var where []string
		for f := range files {
			where = append(where, f)
		}
		sort.Strings(where)
		if !yes {
			fmt.Fprintln(e.stdout, "Compare them with the hosts' own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on each).")
			fmt.Fprintf(e.stdout, "Pin the %d new key(s) in %s? Type \"yes\" to pin: ", fresh, strings.Join(where, ", "))
			ok := confirmed(e.stdin)
			endPrompt(e)
			if !ok {
				fmt.Fprintf(e.stderr, "certkeeper trust: nothing pinned (only \"yes\" pins)\n")
				return exitError(exitFailure)
			}
		}
		errs := distribute.PinNew(keys)
		for hp, err := range errs {
			fmt.Fprintf(e.stderr, "certkeeper trust: %s: %v\n", hp, err)
		}
		pinnedNow = fresh - len(errs)
		failed += len(errs)
	}
	summary := e.stdout
	if changed+failed > 0 {
		summary = e.stderr
	}
	fmt.Fprintf(summary, "%d host(s): %d pinned now, %d already pinned, %d changed, %d failed\n",
		len(keys), pinnedNow, already, changed, failed)
	if changed+failed > 0 {
		return exitError(exitFailure)
	}
	return nil
}
