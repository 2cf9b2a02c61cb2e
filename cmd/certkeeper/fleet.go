package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
)

var fleetCmd = &command{name: "fleet", summary: "the fleet from the admin host: status (what every node installed and serves, joined with what the CA issued)",
	usage: `Usage: certkeeper fleet SUBCOMMAND [flags]

The whole fleet as the admin host sees it: every node of an inventory, read
over SSH/SFTP (and by TLS with --probe), joined with the CA's records.

Subcommands:
  status   per node: the serial issued, installed and served, the expiry,
           the agent's health and what is wrong; a summary; metrics

Examples:
  certkeeper fleet status --inventory nodes.toml
  certkeeper fleet status --inventory nodes.toml --json

Run ` + "`certkeeper fleet status --help`" + ` for its flags; docs/admin-host.md
("Fleet status") has the whole story.
`}

var fleetStatusCmd = &command{name: "fleet status", summary: "what every node installed, serves and how it is, joined with what the CA issued",
	usage: `Usage: certkeeper fleet status --inventory FILE [--ca-dir DIR] [--concurrency N] [--only ID,...]
                               [--stale-after DURATION] [--report-stale-after DURATION]
                               [--bundle NAME] [--probe [--probe-cert FILE --probe-key FILE]]
                               [--no-report] [--textfile FILE] [--json]

Reads every node's fleet report (the agent's <state_dir>/report.json, or the
inventory's report path) over SSH/SFTP, with the host key checked against
known_hosts as push does, up to N nodes at once, and joins the reports with
the CA's records. Per node it shows the serial the CA issued, the one
installed and the one the daemon serves, the expiry, the agent's health, and
its states:

  ok                 installed is issued, served is installed, healthy
  unreachable        the report could not be read (or the probe failed)
  bad-report         the report is damaged or over its bounds
  stale              the CA issued a newer certificate longer than
                     --stale-after ago, and the node still has the old one
  pending            a newer one was issued within --stale-after (not a problem)
  revoked-installed  the installed certificate is revoked
  serving-old        the daemon serves another certificate than the live one
  unhealthy          the agent's own health (as check says) is not OK
  agent-stopped      the agent stopped; nothing repairs or renews
  report-stale       the report is older than --report-stale-after: the
                     agent is dead or hung (killed, not stopped)
  not-issued / not-installed / expired

then a summary and an expiry histogram by week.

--probe also connects to each node's probe endpoint (inventory key probe =
"host:port") by TLS from the admin host and takes the served serial from
there; with --no-report only the probe is used, for nodes without SSH.
Without --probe-cert the probe reads the certificate a mutual-TLS daemon
shows before it refuses the handshake; with --probe-cert/--probe-key (a
control certificate: certkeeper ca issue control HOST) it also proves the
daemon accepts this cluster's client certificates.
--textfile writes the result as Prometheus metrics for node_exporter's
textfile collector (atomically, mode 0644).

  --inventory FILE        the nodes (docs/ssh.md)
  --ca-dir DIR            the CA directory (default /var/lib/certkeeper/ca, or $CERTKEEPER_CA_DIR)
  --concurrency N         nodes at once (default 32)
  --stale-after DURATION  default 24h
  --report-stale-after DURATION
                          a report older than this means the agent is not
                          running (report-stale); default 3 heartbeats, and
                          never less than 2 (a running agent's report is up
                          to one heartbeat old: 5m, as shipped)

Exit 0 when every node is healthy, 1 otherwise, 2 on usage errors.

Examples:
  certkeeper fleet status --inventory nodes.toml
  certkeeper fleet status --inventory nodes.toml --textfile /var/lib/node_exporter/certkeeper_fleet.prom
  certkeeper fleet status --inventory nodes.toml --probe --no-report --json
`}

func init() {
	// fleet is a group (see group in main.go); status does the work.
	register(fleetCmd)
	fleetStatusCmd.run = withErrors(fleetStatusCmd, runFleetStatus)
	registerSub("fleet", fleetStatusCmd)
}

// fleetJSON is fleet status --json.
type fleetJSON struct {
	Nodes   []fleet.NodeStatus `json:"nodes"`
	Summary fleet.Summary      `json:"summary"`
}

func runFleetStatus(ctx context.Context, e *env, args []string) error {
	fs := flags(e, fleetStatusCmd)
	invPath := fs.String("inventory", "", "inventory TOML file")
	caDir := fs.String("ca-dir", "", "CA directory")
	concurrency := fs.Int("concurrency", fleet.DefaultConcurrency, "nodes read at once")
	only := fs.String("only", "", "comma-separated node ids")
	staleAfter := fs.Duration("stale-after", fleet.DefaultStaleAfter, "how long a newer issued certificate may wait to be installed")
	bundle := fs.String("bundle", "", "the report's bundle to look at (default: the one holding the CA's certificate)")
	probe := fs.Bool("probe", false, "also connect to each node's probe endpoint by TLS")
	noReport := fs.Bool("no-report", false, "with --probe: do not read reports over SSH")
	reportStale := fs.Duration("report-stale-after", 0, "how old a node's report may be before its agent counts as not running (default: 3 of the agent's heartbeats)")
	probeCert := fs.String("probe-cert", "", "with --probe: present this client certificate (PEM) to daemons that ask for one, e.g. a control certificate")
	probeKey := fs.String("probe-key", "", "the private key of --probe-cert")
	textfile := fs.String("textfile", "", "write Prometheus metrics to FILE")
	asJSON := fs.Bool("json", false, "print one JSON document (docs/json.md)")
	rest, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *invPath == "" {
		return usagef("--inventory FILE is required")
	}
	if *concurrency < 1 || *concurrency > 1024 {
		return usagef("--concurrency must be between 1 and 1024")
	}
	if *noReport && !*probe {
		return usagef("--no-report needs --probe: without either there is nothing to read")
	}
	if (*probeCert != "" || *probeKey != "") && !*probe {
		return usagef("--probe-cert and --probe-key need --probe")
	}
	if (*probeCert == "") != (*probeKey == "") {
		return usagef("--probe-cert and --probe-key go together: give the client certificate and its key")
	}
	if *reportStale < 0 {
		return usagef("--report-stale-after must not be negative")
	}
	clientCert, err := fleet.ProbeClientCert(*probeCert, *probeKey)
	if err != nil {
		return err
	}
	_, nodes, err := loadInventory(*invPath, *only)
	if err != nil {
		return err
	}
	dir, err := distribute.ExpandHome(*caDir)
	if err != nil {
		return usagef("%v", err)
	}
	ca, err := fleet.LoadCA(dir)
	if err != nil {
		return err
	}
	o := fleet.CollectOptions{Concurrency: *concurrency, Reports: !*noReport, Probe: *probe, ClientCert: clientCert}
	if *probe {
		roots := x509.NewCertPool()
		if pem, err := os.ReadFile(filepath.Join(dir, "cluster.crt")); err == nil {
			roots.AppendCertsFromPEM(pem)
			o.Roots = roots
		}
	}
	now := time.Now()
	st := fleet.Join(fleet.Collect(ctx, nodes, o), ca, fleet.JoinOptions{Now: now, StaleAfter: *staleAfter, ReportStaleAfter: *reportStale, Bundle: *bundle})
	sum := fleet.Summarize(st, now)
	if *textfile != "" {
		if err := fleet.WriteTextfile(*textfile, st, sum, now); err != nil {
			return fmt.Errorf("cannot write the metrics textfile %s: %w", *textfile, err)
		}
	}
	if *asJSON {
		writeJSON(e, fleetJSON{Nodes: st, Summary: sum})
	} else {
		fleet.WriteText(e.stdout, st, sum)
	}
	if sum.Healthy != sum.Nodes {
		return exitError(exitFailure)
	}
	return nil
}
