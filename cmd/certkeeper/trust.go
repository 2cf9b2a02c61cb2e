package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/distribute"
)

var trustCmd = &command{name: "trust", summary: "fetch an SSH host key, show its fingerprint, and pin it in known_hosts",
	usage: `Usage: certkeeper trust HOST[:PORT] --known-hosts FILE [--yes] [--timeout 30s]

Connects to HOST (port 22 unless given), prints the SHA256 fingerprint of
the host key it presents, and appends it to FILE only when you confirm by
typing "yes" (or give --yes). Compare the fingerprint with the host's own
first: on the host, ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub.

certkeeper always verifies host keys against known_hosts; this is how a key
gets there. A host already pinned with the same key is left as it is. A
host pinned with a different key is refused loudly, with both fingerprints:
remove the old entry yourself (ssh-keygen -R HOST -f FILE) if you know why
it changed. Hashed entries and [host]:port entries are understood.

Exit 0 when the key is pinned (now or before), 1 when not.

Examples:
  certkeeper trust admin.example.com --known-hosts /etc/certkeeper/known_hosts
  certkeeper trust 10.0.0.5:2222 --known-hosts ~/.ssh/known_hosts --yes
`}

func init() {
	trustCmd.run = runTrust
	register(trustCmd)
}

func runTrust(ctx context.Context, e *env, args []string) int {
	c := trustCmd
	fs := flags(e, c)
	knownHosts := fs.String("known-hosts", "", "known_hosts file to pin the key in")
	yes := fs.Bool("yes", false, "pin without asking")
	timeout := fs.Duration("timeout", distribute.DefaultTimeout, "timeout for the connection and handshake")
	rest, code, ok := parse(e, fs, args)
	if !ok {
		return code
	}
	if len(rest) != 1 {
		return usageError(e, c, "give exactly one HOST[:PORT]")
	}
	if *knownHosts == "" {
		return usageError(e, c, "--known-hosts FILE is required")
	}
	path, err := distribute.ExpandHome(*knownHosts)
	if err != nil {
		return failure(e, c, err)
	}
	hp, key, err := distribute.FetchHostKey(ctx, rest[0], 22, path, *timeout)
	if err != nil {
		return failure(e, c, err)
	}
	fp := ssh.FingerprintSHA256(key)
	fmt.Fprintf(e.stdout, "%s presents a %s host key\n  fingerprint %s\n", hp, key.Type(), fp)
	state, pinned, err := distribute.CheckPin(path, hp, key)
	if err != nil {
		return failure(e, c, err)
	}
	switch state {
	case distribute.Pinned:
		fmt.Fprintf(e.stdout, "already pinned in %s; nothing to do\n", path)
		return exitOK
	case distribute.Changed:
		return failure(e, c, &distribute.HostKeyChangedError{Host: hp, Offered: key, Pinned: pinned})
	}
	if !*yes {
		fmt.Fprintf(e.stdout, "Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on %s).\n", keyFileType(key), hostOnly(hp))
		fmt.Fprintf(e.stdout, "Pin this key for %s in %s? Type \"yes\" to pin: ", hp, path)
		if !confirmed(e.stdin) {
			fmt.Fprintln(e.stdout)
			fmt.Fprintf(e.stderr, "certkeeper trust: not pinned (only \"yes\" pins)\n")
			return exitFailure
		}
	}
	if err := distribute.Pin(path, hp, key); err != nil {
		return failure(e, c, err)
	}
	fmt.Fprintf(e.stdout, "pinned %s %s %s in %s\n", hp, key.Type(), fp, path)
	return exitOK
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
