package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// The `ca` command and its subcommands: the cluster CA on the admin host.
// Everything here is flags and output; package authority does the work.

var caCmd = &command{name: "ca", summary: "the cluster CA on the admin host: init, issue, list, revoke, crl, renew, sign, rotate",
	usage: `Usage: certkeeper ca SUBCOMMAND [--dir DIR] [flags] [arguments]

The cluster CA, kept in one directory on the admin host: the CA key and
certificate, a database of every certificate issued (bbolt, safe against
crashes and concurrent commands), and one publish directory per node,
DIR/nodes/<id>/, that push and pull read from.

Subcommands:
  init     create a CA: DIR/cluster.key (0600) and DIR/cluster.crt
  issue    make keys and certificates for nodes or a control service
  list     every node's certificate, soonest expiry first, with time left
  revoke   revoke a node (by id) or one certificate (by serial)
  crl      write the signed revocation list, DIR/cluster.crl
  renew    re-issue whatever expires within a window (for a timer)
  sign     sign a node's CSR from stdin (an SSH forced command)
  rotate   replace the cluster CA in phases: start, issue, finish, abort, status

Examples:
  certkeeper ca init  --name mycluster
  certkeeper ca issue node 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a --ip 10.0.0.5
  certkeeper ca issue node --from-file nodes.txt
  certkeeper ca issue control control.example.com
  certkeeper ca list
  certkeeper ca renew --within 40%

Run ` + "`certkeeper ca SUBCOMMAND --help`" + ` for each one's flags and examples;
docs/ca.md has the whole story.
`}

func init() {
	// ca is a group: cobra dispatches to its subcommands (group, in
	// main.go), so it has no body of its own.
	register(caCmd)
	for _, c := range []*command{caInitCmd, caIssueCmd, caListCmd, caRevokeCmd, caCRLCmd, caRenewCmd, caSignCmd, caRotateCmd} {
		registerSub("ca", c)
	}
}

// stringList is a repeatable flag; each value may also hold several,
// separated by commas (--dns a,b). An empty value or an empty name between
// commas is an error, not nothing: --dns "$HOST" with HOST unset would
// otherwise issue a certificate without the name the admin meant.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty value: give a name, or leave the flag out")
	}
	var add []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x == "" {
			return fmt.Errorf("%q has an empty name between commas", v)
		}
		add = append(add, x)
	}
	*s = append(*s, add...)
	return nil
}

// checkDays refuses a validity flag given a value below 1: 0 days is not a
// validity, and the default (ca.toml's) is had by leaving the flag out, so
// --days 0 must not quietly mean it.
func checkDays(fs *flag.FlagSet, names ...string) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil || !slices.Contains(names, f.Name) {
			return
		}
		if n, aerr := strconv.Atoi(f.Value.String()); aerr == nil && n < 1 {
			err = usagef("--%s %d: give a positive number of days, or leave --%s out for the default", f.Name, n, f.Name)
		}
	})
	return err
}

// caFlags are the flags every subcommand that opens a CA has.
type caFlags struct {
	dir            string
	passphraseFile string
}

func (f *caFlags) add(fs interface {
	StringVar(*string, string, string, string)
}, passphrase bool) {
	fs.StringVar(&f.dir, "dir", "", "the CA directory")
	if passphrase {
		fs.StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the passphrase of an encrypted cluster.key")
	}
}

func (f *caFlags) options(e *env, interactive bool) authority.Options {
	o := authority.Options{PassphraseFile: f.passphraseFile}
	if interactive {
		o.Passphrase = terminalPassphrase(e)
	}
	return o
}

// loadCA opens --dir, reporting errors the same way everywhere.
func loadCA(e *env, f *caFlags, interactive bool) (*authority.Authority, error) {
	if f.dir == "" {
		return nil, usagef("--dir DIR is required (the CA directory)")
	}
	return authority.Load(f.dir, f.options(e, interactive))
}

// terminalPassphrase prompts on the terminal, without echo, when standard
// input is one; otherwise there is nobody to ask and it returns nil.
func terminalPassphrase(e *env) authority.PassphraseFunc {
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(prompt string, confirm bool) ([]byte, error) {
		read := func(p string) ([]byte, error) {
			fmt.Fprint(e.stderr, p)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			return b, err
		}
		p, err := read(prompt)
		if err != nil {
			return nil, err
		}
		if confirm {
			again, err := read("Again, to confirm: ")
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(p, again) {
				return nil, errors.New("the passphrases differ")
			}
		}
		return p, nil
	}
}

func noArgs(rest []string) error {
	if len(rest) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(rest, " "))
	}
	return nil
}

func day(t time.Time) string { return rotate.Stamp(t) }

// ---------------------------------------------------------------- ca init

var caInitCmd = &command{name: "ca init", summary: "create a cluster CA",
	usage: `Usage: certkeeper ca init [--dir DIR] --name CLUSTER [--key-type T] [--days N] [--encrypt]

Creates DIR (mode 0700) with a new cluster CA: cluster.key (mode 0600) and a
self-signed cluster.crt (CA:TRUE, path length 0, key usage certSign and
cRLSign, subject and authority key identifiers, 10 years by default), the CA
database ca.db, and ca.toml with the defaults for the certificates it issues.
It never overwrites a CA: a DIR that holds any of these files is refused.

cluster.key is the key to the cluster: keep it on this host only, never
copy it to a node, and consider --encrypt (the key is then encrypted with a
passphrase, PKCS#8 with PBKDF2 and AES-256, which openssl reads too).

  --name CLUSTER          the cluster's name: the CA's CN (required)
  --key-type T            the CA key: ecdsa-p256 (default), ecdsa-p384,
                          ed25519, rsa-2048, rsa-4096
  --days N                the CA's validity in days (default 3650)
  --path-len N            intermediate CAs allowed below it (default 0; -1: no limit)
  --node-key-type T       default key type of node keys (default ecdsa-p256)
  --node-days N           default validity of node certificates (default 90)
  --renew-key keep|rotate what ca renew does with node keys (default rotate)
  --crl-days N            validity of the CRL from ca crl (default 30)
  --encrypt               encrypt cluster.key; the passphrase comes from
                          --passphrase-file, or is asked twice on the terminal
  --passphrase-file FILE  a file (mode 0600) whose first line is the passphrase

Examples:
  certkeeper ca init --name mycluster
  certkeeper ca init --name reign --key-type rsa-4096 --encrypt
`}

func init() { caInitCmd.run = withErrors(caInitCmd, runCAInit) }

func runCAInit(_ context.Context, e *env, args []string) error {
	c := caInitCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	name := fs.String("name", "", "the cluster's name")
	keyType := fs.String("key-type", string(pki.DefaultKeyType), "CA key type")
	days := fs.Int("days", authority.DefaultCADays, "CA validity in days")
	pathLen := fs.Int("path-len", 0, "intermediate CAs allowed below the CA; -1 for no limit")
	def := authority.DefaultSettings("")
	nodeKeyType := fs.String("node-key-type", def.NodeKeyType, "default key type of node keys")
	nodeDays := fs.Int("node-days", def.NodeDays, "default validity of node certificates in days")
	renewKey := fs.String("renew-key", def.RenewKey, "keep or rotate node keys on ca renew")
	crlDays := fs.Int("crl-days", def.CRLDays, "validity of the CRL in days")
	encrypt := fs.Bool("encrypt", false, "encrypt cluster.key with a passphrase")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if f.dir == "" {
		return usagef("--dir DIR is required (where the CA will live)")
	}
	if err := checkDays(fs, "days", "node-days", "crl-days"); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name CLUSTER is required (the cluster's name, the CA's CN)")
	}
	kt, err := pki.ParseKeyType(*keyType)
	if err != nil {
		return usagef("--key-type: %v", err)
	}
	s := authority.Settings{Name: *name, NodeKeyType: *nodeKeyType, NodeDays: *nodeDays, RenewKey: *renewKey, CRLDays: *crlDays}
	if err := s.Check(); err != nil {
		return usagef("%v", err)
	}
	if f.passphraseFile != "" && !*encrypt {
		return usagef("--passphrase-file is for --encrypt (a new CA's key is not encrypted without it)")
	}
	var pass []byte
	if *encrypt {
		if f.passphraseFile != "" {
			pass, err = authority.ReadPassphraseFile(f.passphraseFile)
		} else if ask := terminalPassphrase(e); ask != nil {
			pass, err = ask("Passphrase for the new CA key: ", true)
		} else {
			return usagef("--encrypt needs --passphrase-file FILE when standard input is not a terminal")
		}
		if err != nil {
			return err
		}
	}
	a, err := authority.Init(f.dir, authority.InitParams{Settings: s, KeyType: kt, Days: *days, PathLen: *pathLen, Passphrase: pass}, f.options(e, false))
	if err != nil {
		return err
	}
	i := pki.Describe(a.Cert)
	enc := "not encrypted"
	if *encrypt {
		enc = "encrypted"
	}
	fmt.Fprintf(e.stdout, "created CA %q in %s\n", *name, f.dir)
	t := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(t, "  cluster.crt\t%s, %s, expires %s\n", i.Subject, i.Key, day(i.NotAfter))
	fmt.Fprintf(t, "  \tsha256 %s\n", i.SHA256)
	fmt.Fprintf(t, "  cluster.key\t0600, %s: keep it on this host; never copy it to a node\n", enc)
	fmt.Fprintf(t, "  ca.toml\tnew node keys %s, valid %d days; renew_key = %s\n", s.NodeKeyType, s.NodeDays, s.RenewKey)
	t.Flush()
	fmt.Fprintf(e.stdout, "next: certkeeper ca issue --dir %s node [ID...]\n", f.dir)
	return nil
}

// ---------------------------------------------------------------- ca issue

var caIssueCmd = &command{name: "ca issue", summary: "issue node or control-service certificates",
	usage: `Usage: certkeeper ca issue [--dir DIR] node [ID...] [--dns NAME]... [--ip ADDR]... [--days N] [--key-type T] [--json]
       certkeeper ca issue [--dir DIR] node --from-file FILE
       certkeeper ca issue [--dir DIR] control HOSTNAME [--dns NAME]... [--ip ADDR]...

Makes a key and a certificate for each node and publishes them in
DIR/nodes/<id>/ as node.crt, node.key (0600) and cluster.crt, the Flocker
names every layout's install understands. Without an ID it makes one node
named by a new UUID, as flocker-ca does. A control certificate goes to
DIR/nodes/control-HOSTNAME/ as control-service.crt and control-service.key,
with HOSTNAME as a subject alternative name.

Each certificate: CN = the id (reign's rule), O = the cluster's name, the
id itself as a SAN (a DNS name, digits included, or an IP address), the
--dns and --ip names, extended key usage serverAuth and clientAuth (mutual
TLS), a random 128-bit serial, valid 90 days (ca.toml's node_days) and
never past the CA's own expiry. Many ids in one call are made on every CPU
and recorded in one transaction.

An id that already has a certificate is refused, unless --force (a new
certificate; the old one stays valid until it expires or is revoked) or
--skip-existing (left alone). With --force and no --dns/--ip, the names
of the previous certificate are kept.

  --dns NAME          a DNS subject alternative name; repeat, or a,b (a
                      name of digits only as the node's own id)
  --ip ADDR           an IP subject alternative name; repeat, or a,b
  --days N            validity in days, at least 1 (default, with the flag
                      left out: node_days in ca.toml)
  --key-type T        ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-4096
                      (default: node_key_type in ca.toml)
  --from-file FILE    ids to issue, one a line, each followed by its own
                      names (IP addresses and DNS names); - reads stdin
  --force             issue again for ids that exist
  --skip-existing     leave ids that exist alone
  --passphrase-file FILE   for an encrypted cluster.key

Examples:
  certkeeper ca issue node
  certkeeper ca issue node 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a --ip 10.0.0.5 --dns node1.example.com
  certkeeper ca issue node 1 2 3 --key-type rsa-4096 --days 365
  certkeeper ca issue node --from-file nodes.txt --skip-existing
  certkeeper ca issue control control.example.com --ip 10.0.0.1

A --from-file list:
  # id                                  names
  8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a  node1.example.com 10.0.0.5
  node-2                                node2.example.com,10.0.0.6
`}

func init() { caIssueCmd.run = withErrors(caIssueCmd, runCAIssue) }

// maxNodeList bounds --from-file: 16 MiB is some 200,000 nodes.
const maxNodeList = 16 << 20

func runCAIssue(ctx context.Context, e *env, args []string) error {
	c := caIssueCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	var dns, ips stringList
	fs.Var(&dns, "dns", "DNS subject alternative name (repeatable)")
	fs.Var(&ips, "ip", "IP subject alternative name (repeatable)")
	days := fs.Int("days", 0, "validity in days (default: node_days in ca.toml)")
	keyType := fs.String("key-type", "", "key type (default: node_key_type in ca.toml)")
	fromFile := fs.String("from-file", "", "file listing node ids and their names; - for stdin")
	force := fs.Bool("force", false, "issue again for ids that exist")
	skip := fs.Bool("skip-existing", false, "leave ids that exist alone")
	asJSON := fs.Bool("json", false, "print what was issued, skipped and failed as JSON (docs/json.md)")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("say what to issue: `node [ID...]` or `control HOSTNAME`")
	}
	if rest[0] != "node" && rest[0] != "control" {
		return usagef("unknown kind %q: give node [ID...] or control HOSTNAME", rest[0])
	}
	kind, ids := rest[0], rest[1:]
	if *force && *skip {
		return usagef("--force and --skip-existing contradict each other")
	}
	if err := checkDays(fs, "days"); err != nil {
		return err
	}
	var kt pki.KeyType
	if *keyType != "" {
		var err error
		if kt, err = pki.ParseKeyType(*keyType); err != nil {
			return usagef("--key-type: %v", err)
		}
	}
	names, err := authority.ParseNames(dns, ips)
	if err != nil {
		return usagef("%v", err)
	}
	var reqs []authority.Request
	switch kind {
	case "control":
		if len(ids) != 1 || *fromFile != "" {
			return usagef("control takes exactly one HOSTNAME (the control service's DNS name)")
		}
		r, err := authority.ControlRequest(ids[0], names, kt)
		if err != nil {
			return usagef("%v", err)
		}
		reqs = append(reqs, r)
	case "node":
		if *fromFile != "" {
			if len(ids) > 0 {
				return usagef("give ids either as arguments or with --from-file, not both")
			}
			entries, err := readNodeList(e, *fromFile)
			if err != nil {
				return err
			}
			for _, en := range entries {
				n := en.Names
				n.Add(names)
				reqs = append(reqs, authority.Request{ID: en.ID, Kind: authority.KindNode, Names: n, KeyType: kt})
			}
			break
		}
		if len(ids) == 0 {
			id, err := authority.NewNodeID(nil)
			if err != nil {
				return err
			}
			ids = []string{id}
		}
		if err := authority.DuplicateID(ids); err != nil {
			return usagef("%v", err)
		}
		for _, id := range ids {
			r, err := authority.NodeRequest(id, names, kt)
			if err != nil {
				return usagef("%v", err)
			}
			reqs = append(reqs, r)
		}
	}
	a, err := loadCA(e, &f, true)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := a.Issue(ctx, reqs, authority.IssueOptions{Days: *days, Force: *force, SkipExisting: *skip})
	if err != nil {
		return err
	}
	if *asJSON {
		writeJSON(e, issueReport(res))
		return res.Err()
	}
	printIssued(e, res.Issued, "issued")
	for _, s := range res.Skipped {
		fmt.Fprintf(e.stdout, "skipped %s: %s\n", s.ID, s.Reason)
	}
	if res.Capped && len(res.Issued) > 0 {
		fmt.Fprintf(e.stderr, "certkeeper %s: warning: validity cut to the CA's own expiry, %s (the CA has %s left): plan a new CA\n", c.name, day(res.NotAfter), rotate.Age(time.Until(a.Cert.NotAfter)))
	}
	if len(reqs) > 1 {
		fmt.Fprintf(e.stdout, "%d issued, %d skipped, %d failed in %s\n", len(res.Issued), len(res.Skipped), len(res.Failed), time.Since(start).Round(time.Millisecond))
	}
	if err := res.Err(); err != nil {
		return err
	}
	return nil
}

func printIssued(e *env, issued []authority.Issued, verb string) {
	for _, i := range issued {
		names := pki.Describe(i.Cert).SANs()
		if names != "" {
			names = ", " + names
		}
		note := ""
		if i.Note != "" {
			note = " (" + i.Note + ")"
		}
		key := string(i.KeyType)
		if i.KeptKey {
			key += " key kept"
		}
		fmt.Fprintf(e.stdout, "%s %s %s: serial %s, %s, expires %s%s -> %s%s\n",
			verb, i.Kind, i.ID, pki.Serial(i.Cert), key, day(i.Cert.NotAfter), names, i.Dir, note)
	}
}

func readNodeList(e *env, path string) ([]authority.ListEntry, error) {
	var r io.Reader
	if path == "-" {
		r = e.stdin
	} else {
		f, err := platform.OpenInput(path)
		if err != nil {
			return nil, fmt.Errorf("--from-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxNodeList+1))
	if err != nil {
		return nil, fmt.Errorf("--from-file %s: %w", path, err)
	}
	if len(data) > maxNodeList {
		return nil, fmt.Errorf("--from-file %s: larger than %d MiB; split it", path, maxNodeList>>20)
	}
	entries, err := authority.ParseNodeList(data)
	if err != nil {
		return nil, fmt.Errorf("--from-file %s:\n%w", path, err)
	}
	return entries, nil
}

// ---------------------------------------------------------------- ca list

var caListCmd = &command{name: "ca list", summary: "list certificates, soonest expiry first",
	usage: `Usage: certkeeper ca list [--dir DIR] [--all] [--json]

Shows every node's current certificate, soonest expiry first: id, kind,
status (valid, expired, revoked), expiry and time left, key type, how it
was made (issue, renew, or csr from ca sign), serial and names. --all adds
every older certificate too (status superseded once a newer one exists).
Needs no CA key and only a shared lock.

Examples:
  certkeeper ca list
  certkeeper ca list --json | jq -r '.[] | select(.seconds_left < 30*86400) | .id'
`}

func init() { caListCmd.run = withErrors(caListCmd, runCAList) }

func runCAList(_ context.Context, e *env, args []string) error {
	c := caListCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, false)
	all := fs.Bool("all", false, "every certificate ever issued, not only each node's current one")
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	a, err := loadCA(e, &f, false)
	if err != nil {
		return err
	}
	entries, err := a.List(*all)
	if err != nil {
		return err
	}
	warnCAExpiry(e, a)
	if *asJSON {
		if entries == nil {
			entries = []authority.Entry{}
		}
		return writeJSON(e, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(e.stdout, "no certificates issued yet by %q (certkeeper ca issue --dir %s node)\n", a.Settings.Name, f.dir)
		return nil
	}
	t := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "ID\tKIND\tSTATUS\tEXPIRES\tLEFT\tKEY\tFROM\tSERIAL\tNAMES")
	for _, en := range entries {
		left := rotate.Age(time.Duration(en.SecondsLeft) * time.Second)
		if en.SecondsLeft <= 0 {
			left = "-" + left
		}
		status := string(en.Status)
		if en.Revoked != nil {
			status += " " + en.Revoked.At.Format(time.DateOnly)
		}
		names := append(append([]string{}, en.DNSNames...), en.IPs...)
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.ID, en.Kind, status, en.NotAfter.UTC().Format(time.DateOnly), left, en.KeyType, en.Source, en.Serial, orDash(strings.Join(names, ",")))
	}
	t.Flush()
	return nil
}

// ---------------------------------------------------------------- ca revoke

var caRevokeCmd = &command{name: "ca revoke", summary: "revoke a node or a certificate, then write the CRL",
	usage: `Usage: certkeeper ca revoke [--dir DIR] ID|SERIAL [--reason R] [--no-crl]

By id, revokes every unexpired certificate of that node and retires the
node: ca renew and ca sign leave it alone until ` + "`ca issue --force`" + ` takes it
back. By serial (as ca list prints it; colons optional), revokes that one
certificate. Then writes DIR/cluster.crl (as ca crl does), so the
revocation reaches whoever checks the CRL once it is copied to them.
Revoking what is already revoked changes nothing.

  --reason R   keyCompromise, cACompromise, affiliationChanged, superseded,
               cessationOfOperation, privilegeWithdrawn (default: none given)
  --no-crl     record the revocation only; write the CRL later with ca crl
  --crl-days N validity of the new CRL (default: crl_days in ca.toml)
  --passphrase-file FILE   for an encrypted cluster.key (to sign the CRL)

Examples:
  certkeeper ca revoke 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a --reason keyCompromise
  certkeeper ca revoke 5F:0B:3C:…:9A
`}

func init() { caRevokeCmd.run = withErrors(caRevokeCmd, runCARevoke) }

func runCARevoke(_ context.Context, e *env, args []string) error {
	c := caRevokeCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	reason := fs.String("reason", "", "revocation reason")
	noCRL := fs.Bool("no-crl", false, "do not write the CRL")
	crlDays := fs.Int("crl-days", 0, "validity of the new CRL in days")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give exactly one node id or certificate serial")
	}
	if err := checkDays(fs, "crl-days"); err != nil {
		return err
	}
	code2 := 0
	if *reason != "" {
		if _, ok := pki.Reasons[*reason]; !ok {
			var names []string
			for n := range pki.Reasons {
				names = append(names, n)
			}
			sort.Strings(names)
			return usagef("--reason %q: use one of %s", *reason, strings.Join(names, ", "))
		}
		code2 = pki.Reasons[*reason]
	}
	a, err := loadCA(e, &f, true)
	if err != nil {
		return err
	}
	res, err := a.Revoke(rest[0], code2)
	if err != nil {
		return err
	}
	if res.Node != nil {
		fmt.Fprintf(e.stdout, "revoked node %s: ca renew and ca sign leave it alone from now on\n", res.Node.ID)
	}
	for _, r := range res.Revoked {
		fmt.Fprintf(e.stdout, "revoked %s %s: serial %s (was valid until %s)\n", r.Kind, r.ID, r.Serial, day(r.NotAfter))
	}
	if res.Node == nil {
		warnRevokedCurrent(e, f.dir, res.Revoked)
	}
	for _, r := range res.Already {
		fmt.Fprintf(e.stdout, "already revoked on %s: %s %s serial %s\n", r.Revoked.At.Format(time.DateOnly), r.Kind, r.ID, r.Serial)
	}
	if *noCRL {
		fmt.Fprintf(e.stdout, "the CRL was not written (--no-crl); run certkeeper ca crl --dir %s to publish the revocation\n", f.dir)
		return nil
	}
	info, err := a.WriteCRL(*crlDays)
	if err != nil {
		return fmt.Errorf("the revocation is recorded, but the CRL was not written: %w (run certkeeper ca crl --dir %s once fixed)", err, f.dir)
	}
	printCRL(e, info)
	return nil
}

// ---------------------------------------------------------------- ca crl

var caCRLCmd = &command{name: "ca crl", summary: "write the signed certificate revocation list",
	usage: `Usage: certkeeper ca crl [--dir DIR] [--days N]

Signs a CRL of every revoked certificate that has not expired, numbered one
more than the last, and writes it to DIR/cluster.crl (PEM), as reign keeps
its signing.crl. Daemons that check revocation need a copy that has not
passed its next update: ca renew refreshes it, and ca revoke writes it.

  --days N   how long the CRL is valid (default: crl_days in ca.toml, 30)
  --passphrase-file FILE   for an encrypted cluster.key

Examples:
  certkeeper ca crl
  openssl verify -crl_check -CRLfile /var/lib/certkeeper/ca/cluster.crl -CAfile /var/lib/certkeeper/ca/cluster.crt node.crt
`}

func init() { caCRLCmd.run = withErrors(caCRLCmd, runCACRL) }

func runCACRL(_ context.Context, e *env, args []string) error {
	c := caCRLCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	days := fs.Int("days", 0, "validity of the CRL in days")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if err := checkDays(fs, "days"); err != nil {
		return err
	}
	a, err := loadCA(e, &f, true)
	if err != nil {
		return err
	}
	info, err := a.WriteCRL(*days)
	if err != nil {
		return err
	}
	printCRL(e, info)
	return nil
}

func printCRL(e *env, info *authority.CRLInfo) {
	fmt.Fprintf(e.stdout, "wrote %s: CRL number %s, %d revoked certificate(s), next update %s\n", info.Path, info.Number, len(info.Entries), day(info.NextUpdate))
	if len(info.CAs) > 1 {
		fmt.Fprintf(e.stdout, "a CA rotation is under way: the file holds one CRL per trusted CA (%s)\n", strings.Join(info.CAs, ", "))
	}
}

// ---------------------------------------------------------------- ca renew

var caRenewCmd = &command{name: "ca renew", summary: "re-issue every certificate that expires within a window",
	usage: `Usage: certkeeper ca renew [--dir DIR] --within DURATION|PERCENT [--key keep|rotate] [--days N] [--inventory FILE] [--dry-run]

Re-issues every node's current certificate that expires within DURATION,
or that has at most PERCENT of its lifetime left (or has expired), into its
publish directory, with the same names and key type, so the next push or
pull delivers it. Revoked nodes and certificates are left alone, and so are
nodes whose key lives on the node (CSR mode): their agent renews through
ca sign. With --inventory, so are the nodes it gives mode "csr" or
"pull+csr" while they still hold their first certificate from ca issue
(re-issuing it would hand a pull+csr node a key made here, which it pulls
and installs instead of renewing by CSR). Also rewrites DIR/cluster.crl when it would expire within the
window. Meant for a timer; exit 1 if anything failed.

The window must open before the nodes' agents start looking: an agent with
the default policy looks with 38.3% of the lifetime left (2/3 of it, less up
to 5% of jitter), so 40% (what the shipped hourly timer passes) re-issues
first for any lifetime of 3 days or more. docs/renewal.md has the rule.

  --within WINDOW     a percentage of each certificate's lifetime, such as
                      40%, or a duration, such as 30d or 720h (required)
  --key keep|rotate   rotate (a new key each time) or keep (sign the
                      published key again); default: renew_key in ca.toml
  --days N            new validity (default: node_days in ca.toml)
  --inventory FILE    the push inventory: its csr and pull+csr nodes are
                      left to their agents from their first certificate on
  --dry-run           list what would be renewed; change nothing
  --passphrase-file FILE   for an encrypted cluster.key

Examples:
  certkeeper ca renew --within 40%
  certkeeper ca renew --within 30d
  certkeeper ca renew --within 720h --key keep --dry-run
`}

func init() { caRenewCmd.run = withErrors(caRenewCmd, runCARenew) }

func runCARenew(ctx context.Context, e *env, args []string) error {
	c := caRenewCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	within := fs.String("within", "", "renew what expires within this long")
	key := fs.String("key", "", "keep or rotate node keys")
	days := fs.Int("days", 0, "new validity in days")
	dry := fs.Bool("dry-run", false, "change nothing")
	invPath := fs.String("inventory", "", "inventory whose csr and pull+csr nodes are left to their agents")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *within == "" {
		return usagef("--within is required: a percentage of the lifetime (40%%) or a duration (30d)")
	}
	w, err := authority.ParseWindow(*within)
	if err != nil {
		return usagef("--within %v", err)
	}
	if *key != "" && *key != authority.RenewKeep && *key != authority.RenewRotate {
		return usagef("--key %q: keep or rotate", *key)
	}
	if err := checkDays(fs, "days"); err != nil {
		return err
	}
	var csrNodes map[string]bool
	if *invPath != "" {
		_, nodes, err := loadInventory(*invPath, "")
		if err != nil {
			return err
		}
		csrNodes = map[string]bool{}
		for _, n := range nodes {
			if n.SendsCSR() {
				csrNodes[n.ID] = true
			}
		}
	}
	a, err := loadCA(e, &f, true)
	if err != nil {
		return err
	}
	res, err := a.Renew(ctx, authority.RenewOptions{Within: w, Key: *key, Days: *days, DryRun: *dry, CSR: csrNodes})
	if err != nil {
		return err
	}
	warnCAExpiry(e, a)
	if *dry {
		for _, d := range res.Due {
			if d.Unpublished {
				fmt.Fprintf(e.stdout, "would re-issue %s %s: serial %s was recorded but never published\n", d.Node.Kind, d.Node.ID, d.Cert.Serial)
				continue
			}
			fmt.Fprintf(e.stdout, "would renew %s %s: serial %s expires %s\n", d.Node.Kind, d.Node.ID, d.Cert.Serial, day(d.Cert.NotAfter))
		}
	}
	printIssued(e, res.Issued, "renewed")
	for _, s := range res.Skipped {
		fmt.Fprintf(e.stdout, "skipped %s: %s\n", s.ID, s.Reason)
	}
	if len(res.Due) == 0 {
		fmt.Fprintf(e.stdout, "nothing to renew: no certificate expires within %s\n", w)
	}
	if res.CRL != nil {
		printCRL(e, res.CRL)
	}
	failed := false
	if res.CRLErr != nil {
		failed = true
		fmt.Fprintf(e.stderr, "certkeeper %s: refresh the CRL: %v\n", c.name, res.CRLErr)
	}
	if err := res.Err(); err != nil {
		return err
	}
	if failed {
		return exitError(exitFailure)
	}
	return nil
}

// warnCAExpiry tells the admin, on stderr, that the cluster CA itself is
// near its end (ca_expiry_warn in ca.toml) and how to replace it.
func warnCAExpiry(e *env, a *authority.Authority) {
	if h, text := a.CAExpiry(); h != rotate.OK {
		fmt.Fprintf(e.stderr, "%s: %s\n", strings.ToLower(h.String()), text)
	}
}

// ---------------------------------------------------------------- ca sign

var caSignCmd = &command{name: "ca sign", summary: "sign a node's CSR from stdin; the chain goes to stdout",
	usage: `Usage: certkeeper ca sign [--dir DIR] --node ID [--dns NAME]... [--ip ADDR]... [--days N] [--passphrase-file FILE]

Reads one certificate signing request (PEM or DER, at most 64 KiB) on
standard input and writes the signed certificate, followed by any
intermediates (never the CA itself), as PEM on standard output. It is what
a node's agent reaches over SSH in CSR mode (its key never leaves the
node), through a forced command in the admin's authorized_keys:

  restrict,command="/usr/bin/certkeeper ca sign --dir /var/lib/certkeeper/ca --node 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a" ssh-ed25519 AAAA… certkeeper-node:8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a

Whatever command the node asks for, sshd runs this one, for this node only.
The request is refused (a message on stderr, exit 1) unless: its signature
verifies; its key is RSA of 2048 to 8192 bits, ECDSA P-256 or larger, or
Ed25519; its CN is exactly ID; and each subject alternative name it asks for
is one recorded for ID (by ca issue), given on this command line, or ID
itself. A request without names gets the recorded ones. A revoked node is
refused. Through the forced command (sshd sets SSH_ORIGINAL_COMMAND), a
node whose key was made here (ca issue) turns to CSR mode; run by hand,
the node keeps its mode: the certificate is recorded as its current one,
its published bundle stays, and ca renew renews it as before. A request
for the key of the node's current, never-installed certificate gets that
certificate back, not a new one. It never prompts: an encrypted cluster.key needs
--passphrase-file or passphrase_file in ca.toml.

  --node ID     the node this key belongs to (required)
  --dns, --ip   further names this node may ask for
  --days N      validity (default: node_days in ca.toml)

Examples:
  openssl req -new -key node.key -subj /CN=node-1 | certkeeper ca sign --node node-1 > node.crt
  ssh -i /etc/certkeeper/id_ed25519 certkeeper-ca@admin.example.com < node.csr > node.crt
`}

func init() { caSignCmd.run = withErrors(caSignCmd, runCASign) }

func runCASign(_ context.Context, e *env, args []string) error {
	c := caSignCmd
	fs := flags(e, c)
	var f caFlags
	f.add(fs, true)
	node := fs.String("node", "", "the node id the request must be for")
	var dns, ips stringList
	fs.Var(&dns, "dns", "a further DNS name the node may ask for")
	fs.Var(&ips, "ip", "a further IP address the node may ask for")
	days := fs.Int("days", 0, "validity in days")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *node == "" {
		return usagef("--node ID is required")
	}
	if err := checkDays(fs, "days"); err != nil {
		return err
	}
	extra, err := authority.ParseNames(dns, ips)
	if err != nil {
		return usagef("%v", err)
	}
	csr, err := io.ReadAll(io.LimitReader(e.stdin, pki.MaxCSRSize+1))
	if err != nil {
		return fmt.Errorf("read the request from standard input: %w", err)
	}
	if len(csr) > pki.MaxCSRSize {
		return fmt.Errorf("%w: standard input is larger than %d bytes", pki.ErrBadCSR, pki.MaxCSRSize)
	}
	// Never interactive: stdin is the request, and sshd gives no terminal.
	a, err := loadCA(e, &f, false)
	if err != nil {
		return err
	}
	// sshd sets SSH_ORIGINAL_COMMAND for a forced command (the node's
	// agent always asks for a command): without it, the admin runs ca
	// sign by hand and hands the request in.
	handedIn := os.Getenv("SSH_ORIGINAL_COMMAND") == ""
	s, err := a.Sign(*node, csr, authority.SignOptions{Days: *days, Extra: extra, HandedIn: handedIn})
	if err != nil {
		return fmt.Errorf("node %s: %w", *node, err)
	}
	if _, err := e.stdout.Write(pki.EncodeCertificates(s.Chain...)); err != nil {
		return err
	}
	switch s.Mode {
	case authority.KeptMode:
		fmt.Fprintf(e.stderr, "node %s: recorded certificate %s as its current one; the node keeps its mode (its key is made here, source %s): its published bundle is unchanged, and ca renew re-issues it in its window\n",
			*node, authority.FormatSerial(s.Chain[0].SerialNumber), s.Was)
	case authority.ConvertedToCSR:
		fmt.Fprintf(e.stderr, "node %s: its own agent asked (forced command): it renews by CSR from now on; its published bundle holds this certificate and no key, and ca renew leaves it to the agent\n", *node)
	}
	if s.Reused {
		// stderr: the agent reads only stdout when ca sign succeeds.
		fmt.Fprintf(e.stderr, "node %s: this key already has certificate %s (signed %s), not installed since; handed back again, nothing new recorded\n",
			*node, authority.FormatSerial(s.Chain[0].SerialNumber), day(s.Chain[0].NotBefore))
	}
	return nil
}

// warnRevokedCurrent says when a certificate revoked by serial was its
// node's current one: the published bundle (what push and pull send)
// then holds a revoked certificate, and ca renew leaves it until its
// window. admin-host.md's order is the other way round: issue, then
// revoke the old serial.
func warnRevokedCurrent(e *env, dir string, revoked []authority.CertRecord) {
	ca, err := fleet.LoadCA(dir)
	if err != nil {
		return
	}
	for _, r := range revoked {
		if n, ok := ca.Nodes[r.ID]; ok && n.Revoked == nil && fleet.NormSerial(n.Current) == fleet.NormSerial(r.Serial) {
			fmt.Fprintf(e.stdout, "%s's current certificate is revoked, and its published bundle holds it: issue a new one (certkeeper ca issue --dir %s %s %s --force), then push or sync\n",
				r.ID, dir, r.Kind, strings.TrimPrefix(r.ID, "control-"))
		}
	}
}
