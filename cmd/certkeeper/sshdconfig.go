package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/certkeeper/certkeeper/distribute"
)

var sshdConfigCmd = &command{name: "sshd-config", summary: "print the admin host's sshd set-up for nodes that pull or send CSRs; sync their chroots and keys",
	usage: `Usage: certkeeper sshd-config --inventory FILE [--chroot-dir DIR] [--keys-dir DIR]
                              [--ca-dir DIR] [--ca-account NAME] [--certkeeper PATH]
                              [--authorized-keys | --sync --ca-dir DIR] [--only ID,...]

Nodes that pull (the agent's [source]; inventory mode "pull", the default)
log in to the admin host, each with its own account (the inventory's
account, default ck-<id>) and SSH key (public_key or public_key_file). This
command prints the sshd_config fragment that locks each account into a
chroot holding only its own bundle, served read-only (ForceCommand
internal-sftp -R), so a node can read its own key and nothing else.

Nodes that renew by CSR (inventory mode "csr", or "pull+csr" to pull the
first bundle) log in to the CA's account instead (--ca-account, default
certkeeper-ca, the owner of the CA directory), whose authorized_keys gives
each node key one forced command:
  restrict,command="/usr/bin/certkeeper ca sign --dir DIR --node ID" ssh-ed25519 AAAA… certkeeper-node:ID
so the key can only have its own id's CSR signed. That needs --ca-dir.

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
  --ca-dir DIR        the CA directory: what --sync copies from, and the
                      --dir of the CSR nodes' forced command
  --ca-account NAME   the CA's account, for CSR nodes (default certkeeper-ca)
  --certkeeper PATH   the binary the forced command runs
                      (default /usr/bin/certkeeper)

--sync writes the CA account's authorized_keys from every CSR node of the
inventory, whatever --only says, since the file is written whole; with no
CSR node left it keeps only its header. It then warns of each file under
--keys-dir and each chroot under --chroot-dir that no node of the
inventory pulls through (a node removed, or switched to csr mode), with
the command that removes it: a removed node's key could still log in and
read its old bundle.

Create the accounts first, once (the fragment shows the command for each):
  useradd --system --user-group --home-dir / --shell /usr/sbin/nologin ck-8eab4b8d
  useradd --system --user-group --home-dir /var/lib/certkeeper/ca --shell /bin/sh certkeeper-ca

Examples:
  certkeeper sshd-config --inventory nodes.toml > /etc/ssh/sshd_config.d/certkeeper.conf
  certkeeper sshd-config --inventory nodes.toml --authorized-keys
  certkeeper sshd-config --inventory nodes.toml --sync
  certkeeper sshd-config --inventory nodes.toml --authorized-keys
`}

func init() {
	sshdConfigCmd.run = withErrors(sshdConfigCmd, runSSHDConfig)
	register(sshdConfigCmd)
}

func runSSHDConfig(_ context.Context, e *env, args []string) error {
	c := sshdConfigCmd
	fs := flags(e, c)
	invPath := fs.String("inventory", "", "inventory TOML file")
	chroot := fs.String("chroot-dir", distribute.DefaultChrootDir, "directory holding the nodes' chroots")
	keys := fs.String("keys-dir", distribute.DefaultKeysDir, "directory holding each account's authorized_keys file")
	authKeys := fs.Bool("authorized-keys", false, "print authorized_keys lines instead of the sshd_config fragment")
	sync := fs.Bool("sync", false, "create or update the chroots and authorized_keys files (as root)")
	caDir := fs.String("ca-dir", "", "CA directory: holds nodes/<id>/ (--sync) and is the --dir of CSR nodes' ca sign")
	caAccount := fs.String("ca-account", distribute.DefaultCAAccount, "the CA's account, which CSR nodes log in to")
	bin := fs.String("certkeeper", distribute.DefaultCertkeeper, "the certkeeper binary the forced command runs")
	only := fs.String("only", "", "comma-separated node ids")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(rest, " "))
	}
	if *invPath == "" {
		return usagef("--inventory FILE is required")
	}
	if *authKeys && *sync {
		return usagef("--authorized-keys and --sync do different things; give one")
	}
	if *sync && *caDir == "" {
		return usagef("--sync needs --ca-dir DIR, the CA directory to copy bundles from")
	}
	for _, d := range []string{*chroot, *keys} {
		if !filepath.IsAbs(d) {
			return usagef("%q must be an absolute path", d)
		}
	}
	inv, nodes, err := loadInventory(*invPath, *only)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(*bin) {
		return usagef("--certkeeper %q must be an absolute path (sshd runs the forced command without a PATH you control)", *bin)
	}
	dir := ""
	if *caDir != "" {
		d, err := distribute.ExpandHome(*caDir)
		if err == nil {
			d, err = filepath.Abs(d)
		}
		if err != nil {
			return usagef("%v", err)
		}
		dir = d
	}
	o := distribute.SSHDOptions{ChrootDir: *chroot, KeysDir: *keys, CAAccount: *caAccount, CADir: dir, Certkeeper: *bin}
	switch {
	case *authKeys:
		text, err := distribute.AuthorizedKeysFiles(nodes, o)
		if err != nil {
			return err
		}
		fmt.Fprint(e.stdout, text)
	case *sync:
		res, err := distribute.SyncChroots(nodes, dir, o)
		for _, r := range res {
			state := "unchanged"
			if r.Changed {
				state = "updated"
			}
			fmt.Fprintf(e.stdout, "%s: %s: %s (%s); authorized_keys %s\n", r.Node.ID, o.ChrootOf(r.Node), strings.Join(r.Files, ", "), state, filepath.Join(*keys, r.Node.Account))
		}
		if err != nil {
			return err
		}
		path, n, changed, err := distribute.SyncSignKeys(inv.Nodes, o)
		if err != nil {
			return err
		}
		if path != "" {
			state := "unchanged"
			if changed {
				state = "updated"
			}
			fmt.Fprintf(e.stdout, "%s: %d node(s) in CSR mode may run ca sign (%s)\n", path, n, state)
		}
		strays, err := distribute.Strays(inv.Nodes, o)
		for _, s := range strays {
			fmt.Fprintf(e.stderr, "certkeeper %s: warning: %s: no node of the inventory pulls through it (a node removed, or switched to csr mode); its key may still log in and read its old bundle. Remove it: %s\n", c.name, s.Path, s.Remove)
		}
		if err != nil {
			return err
		}
	default:
		fmt.Fprint(e.stdout, distribute.SSHDConfig(nodes, o))
	}
	return nil
}
