package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/certkeeper/certkeeper/distribute"
)

var sshdConfigCmd = &command{name: "sshd-config", summary: "print the admin host's sshd set-up for pulling nodes; sync their chroots",
	usage: `Usage: certkeeper sshd-config --inventory FILE [--chroot-dir DIR] [--keys-dir DIR]
                              [--authorized-keys | --sync --ca-dir DIR] [--only ID,...]

Nodes that pull (the agent's [source]) log in to the admin host, each with
its own account (the inventory's account, default ck-<id>) and SSH key
(public_key or public_key_file). This command prints the sshd_config
fragment that locks each account into a chroot holding only its own
bundle, served read-only (ForceCommand internal-sftp -R), so a node can
read its own key and nothing else.

  (default)           print the sshd_config Match blocks; install them as
                      /etc/ssh/sshd_config.d/certkeeper.conf, then sshd -t
                      and reload sshd
  --authorized-keys   print each account's authorized_keys line, under a
                      comment naming the file it belongs in
  --sync              as root: create or update each chroot with a copy of
                      DIR/nodes/<id>/ (root:<account> 0440) and write the
                      authorized_keys files; run after every ca issue/renew
  --chroot-dir DIR    where the chroots live (default /srv/certkeeper)
  --keys-dir DIR      where the authorized_keys files live
                      (default /etc/ssh/certkeeper/authorized_keys)

Create the accounts first, once (the fragment shows the command for each):
  useradd --system --user-group --home-dir / --shell /usr/sbin/nologin ck-8eab4b8d

Examples:
  certkeeper sshd-config --inventory nodes.toml > /etc/ssh/sshd_config.d/certkeeper.conf
  certkeeper sshd-config --inventory nodes.toml --authorized-keys
  certkeeper sshd-config --inventory nodes.toml --sync --ca-dir /srv/certkeeper-ca
`}

func init() {
	sshdConfigCmd.run = runSSHDConfig
	register(sshdConfigCmd)
}

func runSSHDConfig(_ context.Context, e *env, args []string) int {
	c := sshdConfigCmd
	fs := flags(e, c)
	invPath := fs.String("inventory", "", "inventory TOML file")
	chroot := fs.String("chroot-dir", distribute.DefaultChrootDir, "directory holding the nodes' chroots")
	keys := fs.String("keys-dir", distribute.DefaultKeysDir, "directory holding each account's authorized_keys file")
	authKeys := fs.Bool("authorized-keys", false, "print authorized_keys lines instead of the sshd_config fragment")
	sync := fs.Bool("sync", false, "create or update the chroots and authorized_keys files (as root)")
	caDir := fs.String("ca-dir", "", "CA directory holding nodes/<id>/ (with --sync)")
	only := fs.String("only", "", "comma-separated node ids")
	rest, code, ok := parse(e, fs, args)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return usageError(e, c, "unexpected arguments: %s", strings.Join(rest, " "))
	}
	if *invPath == "" {
		return usageError(e, c, "--inventory FILE is required")
	}
	if *authKeys && *sync {
		return usageError(e, c, "--authorized-keys and --sync do different things; give one")
	}
	if *sync && *caDir == "" {
		return usageError(e, c, "--sync needs --ca-dir DIR, the CA directory to copy bundles from")
	}
	for _, d := range []string{*chroot, *keys} {
		if !filepath.IsAbs(d) {
			return usageError(e, c, "%q must be an absolute path", d)
		}
	}
	inv, err := distribute.LoadInventory(*invPath)
	if err != nil {
		return failure(e, c, err)
	}
	var ids []string
	for _, id := range strings.Split(*only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	nodes, err := inv.Select(ids)
	if err != nil {
		return usageError(e, c, "%v", err)
	}
	o := distribute.SSHDOptions{ChrootDir: *chroot, KeysDir: *keys}
	switch {
	case *authKeys:
		for _, n := range nodes {
			line, err := distribute.AuthorizedKeysLine(n)
			if err != nil {
				return failure(e, c, err)
			}
			fmt.Fprintf(e.stdout, "# %s (root:root 0644)\n%s\n", filepath.Join(*keys, n.Account), line)
		}
	case *sync:
		dir, err := distribute.ExpandHome(*caDir)
		if err != nil {
			return usageError(e, c, "%v", err)
		}
		res, err := distribute.SyncChroots(nodes, dir, o)
		for _, r := range res {
			state := "unchanged"
			if r.Changed {
				state = "updated"
			}
			fmt.Fprintf(e.stdout, "%s: %s: %s (%s); authorized_keys %s\n", r.Node.ID, o.ChrootOf(r.Node), strings.Join(r.Files, ", "), state, filepath.Join(*keys, r.Node.Account))
		}
		if err != nil {
			return failure(e, c, err)
		}
	default:
		fmt.Fprint(e.stdout, distribute.SSHDConfig(nodes, o))
	}
	return exitOK
}
