package fleet

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/certkeeper/certkeeper/internal/promtext"
	"github.com/certkeeper/certkeeper/platform"
)

// Metric names of fleet status's textfile (docs/admin-host.md lists them).
const (
	MetricNodeOK       = "certkeeper_fleet_node_ok"
	MetricNodeState    = "certkeeper_fleet_node_state"
	MetricNodeNotAfter = "certkeeper_fleet_node_not_after_timestamp_seconds"
	MetricNodeMatches  = "certkeeper_fleet_node_installed_is_issued"
	MetricNodes        = "certkeeper_fleet_nodes"
	MetricStateNodes   = "certkeeper_fleet_state_nodes"
	MetricExpiryWeek   = "certkeeper_fleet_expiring_nodes"
	MetricLastRun      = "certkeeper_fleet_status_timestamp_seconds"
)

// metricHelp is each family's HELP text (the textfile's own description,
// as docs/admin-host.md's table gives it).
var metricHelp = map[string]string{
	MetricNodeOK:       "1 when the node is healthy (fleet status), else 0",
	MetricNodeState:    "1 for each state the node is in (ok, stale, pending, unreachable, ...)",
	MetricNodeNotAfter: "expiry of the node's installed certificate (else the issued one), in Unix seconds",
	MetricNodeMatches:  "1 when the serial installed on the node is the one the CA issued last, else 0",
	MetricNodes:        "nodes of the inventory, healthy and unhealthy",
	MetricStateNodes:   "nodes in each state",
	MetricExpiryWeek:   "nodes whose certificate expires in week N from now (expired: already past)",
	MetricLastRun:      "when fleet status wrote these metrics, in Unix seconds",
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func label(k, v string) string { return k + `="` + labelEscaper.Replace(v) + `"` }

// WriteMetrics writes fleet status in the Prometheus text format, for the
// admin host's node_exporter textfile collector.
func WriteMetrics(w io.Writer, st []NodeStatus, sum Summary, now time.Time) {
	s := metrics.NewSet()
	g := func(name string, v float64, labels ...string) {
		s.NewGauge(name+"{"+strings.Join(labels, ",")+"}", nil).Set(v)
	}
	for _, n := range st {
		node := label("node", n.ID)
		g(MetricNodeOK, b2f(n.OK()), node)
		for _, x := range n.States {
			g(MetricNodeState, 1, node, label("state", x))
		}
		if e := n.Expiry(); !e.IsZero() {
			g(MetricNodeNotAfter, float64(e.UnixNano())/1e9, node)
		}
		if n.Installed != "" && n.Issued != "" {
			g(MetricNodeMatches, b2f(NormSerial(n.Installed) == NormSerial(n.Issued)), node)
		}
	}
	s.NewGauge(MetricNodes+`{health="healthy"}`, nil).Set(float64(sum.Healthy))
	s.NewGauge(MetricNodes+`{health="unhealthy"}`, nil).Set(float64(sum.Nodes - sum.Healthy))
	for x, c := range sum.States {
		g(MetricStateNodes, float64(c), label("state", x))
	}
	for _, wk := range sum.Weeks {
		g(MetricExpiryWeek, float64(wk.Nodes), label("week", strconv.Itoa(wk.Week)))
	}
	if sum.Expired > 0 {
		g(MetricExpiryWeek, float64(sum.Expired), label("week", "expired"))
	}
	s.NewGauge(MetricLastRun, nil).Set(float64(now.UnixNano()) / 1e9)
	// With metadata on (the binary has it), WritePrometheus writes an
	// empty "# HELP name" line per family: give each its text.
	var buf bytes.Buffer
	s.WritePrometheus(&buf)
	w.Write(promtext.WithHelp(buf.Bytes(), metricHelp))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteTextfile writes the metrics to path with the project's one atomic
// write (platform.AtomicWrite: a temporary file beside it, exactly 0644
// before the first byte so node_exporter reads it, fsynced, renamed into
// place): the collector never sees half a file.
func WriteTextfile(path string, st []NodeStatus, sum Summary, now time.Time) error {
	var buf bytes.Buffer
	WriteMetrics(&buf, st, sum, now)
	return platform.WriteFileAtomic(path, buf.Bytes(), 0o644, platform.NoOwner)
}
