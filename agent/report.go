package agent

import (
	"path/filepath"
	"time"

	"github.com/certkeeper/certkeeper/fleet"
)

// ReportPath is where the agent keeps its fleet report: state_dir's
// report.json, mode 0644 in the 0711 state directory, so an account that
// knows the path (the push account over SFTP) reads it without listing
// anything else (docs/admin-host.md, "Fleet status").
func ReportPath(c *Config) string { return filepath.Join(c.StateDir, fleet.ReportFileName) }

// BuildReport is the fleet report of an agent's state: per bundle what is
// live, what it owes, its last error and its health, as `check` judges
// it. version is the agent's version.
func BuildReport(c *Config, version string, pid int, bundles []BundleState, now, stopped time.Time) fleet.Report {
	r := fleet.Report{NodeID: c.NodeID, AgentVersion: version, PID: pid, Written: now, Stopped: stopped}
	nodeIDs := map[string]string{}
	noCheck := map[string]bool{}
	for i := range c.Bundles {
		nodeIDs[c.Bundles[i].Name] = c.Bundles[i].NodeID
		noCheck[c.Bundles[i].Name] = len(c.Bundles[i].Check) == 0
	}
	for _, b := range bundles {
		h, text := b.Health()
		br := fleet.BundleReport{
			Name: b.Name, NodeID: nodeIDs[b.Name], Serial: b.Serial, NotAfter: b.NotAfter,
			Owed: b.Owed.Text(), Health: h.String(), HealthText: text, NoCheck: noCheck[b.Name],
		}
		if e := b.LastInstall; e != nil && e.Result == ResultInstalled {
			br.LastChange = e.Time
		}
		if e := b.LastInstall; e != nil && (e.Result == ResultInstalled || e.Result == ResultUnchanged) {
			br.LastDelivery = e.Time
		}
		if e := b.LastError; e != nil {
			br.LastError, br.LastErrorAt = e.Detail, e.Time
			if br.LastError == "" {
				br.LastError = e.Result
			}
		}
		if e := b.LastCheck; e != nil {
			br.LastCheck, br.LastCheckAt = e.Result, e.Time
		}
		servedInto(&br, b)
		r.Bundles = append(r.Bundles, br)
	}
	return r
}

// servedInto copies the served-certificate check's result, when the agent
// has one, into the report.
func servedInto(br *fleet.BundleReport, b BundleState) {
	if sv := b.Served; sv != nil {
		br.ServedSerial, br.ServedAt = sv.Serial, sv.Checked
	}
}

// DefaultReportHeartbeat is how often a running agent rewrites its fleet
// report when nothing in it changed (its "written" time moves on), so
// that fleet status can tell a running agent from one that died or hangs:
// a report older than a few heartbeats is "report-stale". One report of
// a few KiB every few minutes is the whole cost.
const DefaultReportHeartbeat = 5 * time.Minute

// MinConfigReportHeartbeat and MaxReportHeartbeat bound the config's
// report_heartbeat: a report rewritten more than twice a minute is churn
// over SFTP, and one rewritten less than hourly leaves a dead agent
// unnoticed by fleet status for three hours.
const (
	MinConfigReportHeartbeat = time.Minute
	MaxReportHeartbeat       = time.Hour
)

// MinReportHeartbeat bounds Options.ReportHeartbeat from below (tests use
// short ones; the I/O stays bounded).
const MinReportHeartbeat = 100 * time.Millisecond

// ReportDue decides whether save writes the report: when its content
// changed, always; otherwise when alive (the agent runs and its loops
// are not stuck) and the last write is at least half a heartbeat old (a
// tick every half heartbeat then keeps every report younger than one
// heartbeat). A report never written is due.
func ReportDue(changed bool, last, now time.Time, heartbeat time.Duration, alive bool) bool {
	switch {
	case changed || last.IsZero():
		return true
	case !alive:
		return false
	}
	return now.Sub(last) >= heartbeat/2
}
