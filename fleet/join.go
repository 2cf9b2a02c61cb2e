package fleet

import (
	"fmt"
	"sort"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/rotate"
)

// States a node can be in, as fleet status shows them. A node may be in
// several; OK is alone.
const (
	StateOK          = "ok"
	StateUnreachable = "unreachable"   // its report could not be read
	StateBadReport   = "bad-report"    // read, but damaged or too large
	StateNotIssued   = "not-issued"    // the CA has no certificate for it
	StateNotFound    = "not-installed" // the report has no bundle with a serial of it
	StatePending     = "pending"       // issued newer than installed, within the stale threshold
	StateStale       = "stale"         // issued newer than installed for longer than the threshold
	StateRevoked     = "revoked-installed"
	StateServedOld   = "serving-old"   // the daemon serves another certificate than the live one
	StateUnhealthy   = "unhealthy"     // the agent's own health is not OK
	StateStopped     = "agent-stopped" // the agent stopped (cleanly); nothing renews
	StateExpired     = "expired"       // the installed certificate is past its not-after
	// StateReportStale: the report was read, but the agent has not
	// rewritten it for longer than its heartbeat allows: the agent is not
	// running (killed, crashed, hung); what the report says is old.
	StateReportStale = "report-stale"
)

// SummaryStates are the states fleet status's summary line counts, in
// its order: those that make a node unhealthy, and pending (a rollout in
// progress, not a problem) after stale.
var SummaryStates = []string{StateUnreachable, StateReportStale, StateStale, StatePending, StateRevoked, StateServedOld,
	StateUnhealthy, StateBadReport, StateStopped, StateNotIssued, StateNotFound, StateExpired}

// problem says which states make a node not healthy (exit 1). Pending is
// a rollout in progress: shown, not counted against the fleet.
var problem = map[string]bool{
	StateUnreachable: true, StateBadReport: true, StateNotIssued: true, StateNotFound: true,
	StateStale: true, StateRevoked: true, StateServedOld: true, StateUnhealthy: true,
	StateStopped: true, StateExpired: true, StateReportStale: true,
}

// DefaultStaleAfter is how long a newer issued certificate may wait to be
// installed before the node counts as stale: longer than an agent's pull
// interval plus its jitter, shorter than a renewal window.
const DefaultStaleAfter = 24 * time.Hour

// ReportHeartbeats is how many of its own heartbeats a report may be old
// before the agent counts as not running (ReportStale): one missed write
// is load or a slow disk, three is an agent that is gone.
const ReportHeartbeats = 3

// MinReportHeartbeats is the least age, in the report's own heartbeats,
// that counts as stale whatever --report-stale-after says: a running
// agent keeps its report younger than one heartbeat (ReportDue), and one
// more allows for a loaded host or a slow disk.
const MinReportHeartbeats = 2

// ReportStale judges a report's age: stale when it was written longer
// ago than after (or, with after 0, ReportHeartbeats of the heartbeat
// the report names; never less than MinReportHeartbeats of it). A report without a heartbeat (an agent that writes
// only on change) and the report of an agent that stopped cleanly (that
// is StateStopped) are never stale; a report from the future (clock
// skew) is not either. It returns the report's age.
func ReportStale(r *Report, now time.Time, after time.Duration) (bool, time.Duration) {
	age := now.Sub(r.Written)
	if r.Written.IsZero() || !r.Stopped.IsZero() || age <= 0 {
		return false, max(age, 0)
	}
	beat := time.Duration(r.Heartbeat * float64(time.Second))
	switch {
	case after <= 0 && beat <= 0:
		return false, age
	case after <= 0:
		after = ReportHeartbeats * beat
	case after < MinReportHeartbeats*beat:
		// A running agent's report is up to a heartbeat old (more on
		// a loaded host): a shorter threshold would call every running
		// agent dead.
		after = MinReportHeartbeats * beat
	}
	return age > after, age
}

// Fetched is what the admin host got from one node: its report, or why not.
type Fetched struct {
	ID      string // inventory id (the CA's id)
	Address string
	Data    []byte
	Err     error
	// Served, when set, is the serial a TLS probe saw (--probe), used
	// when the report has none or could not be read.
	Served    string
	ProbeErr  error
	Probed    bool
	NotReport bool // probe only: no report was asked for
}

// CA is the CA's records, as authority gives them.
type CA struct {
	Nodes map[string]authority.NodeRecord
	Certs []authority.CertRecord
}

// JoinOptions shape the join.
type JoinOptions struct {
	Now        time.Time
	StaleAfter time.Duration
	// Bundle names the report's bundle to look at; empty: the bundle
	// holding a serial the CA issued to the node, else the only one.
	Bundle string
	// ReportStaleAfter is how old a report may be before its agent counts
	// as not running; 0: ReportHeartbeats of the report's own heartbeat.
	ReportStaleAfter time.Duration
}

// NodeStatus is one node in fleet status.
type NodeStatus struct {
	ID                string    `json:"id"`
	Address           string    `json:"address,omitempty"`
	Issued            string    `json:"issued_serial,omitempty"`
	IssuedAt          time.Time `json:"issued_at,omitzero"`
	IssuedNotAfter    time.Time `json:"issued_not_after,omitzero"`
	Installed         string    `json:"installed_serial,omitempty"`
	InstalledNotAfter time.Time `json:"installed_not_after,omitzero"`
	Served            string    `json:"served_serial,omitempty"`
	Bundle            string    `json:"bundle,omitempty"`
	Health            string    `json:"health,omitempty"`
	HealthText        string    `json:"health_text,omitempty"`
	AgentVersion      string    `json:"agent_version,omitempty"`
	ReportWritten     time.Time `json:"report_written,omitzero"`
	States            []string  `json:"states"`
	Problems          []string  `json:"problems,omitempty"`
}

// OK reports whether the node counts as healthy.
func (s NodeStatus) OK() bool {
	for _, st := range s.States {
		if problem[st] {
			return false
		}
	}
	return true
}

// Has reports whether the node is in a state.
func (s NodeStatus) Has(state string) bool {
	for _, st := range s.States {
		if st == state {
			return true
		}
	}
	return false
}

// Expiry is the not-after that matters: the installed certificate's, else
// the issued one's.
func (s NodeStatus) Expiry() time.Time {
	if !s.InstalledNotAfter.IsZero() {
		return s.InstalledNotAfter
	}
	return s.IssuedNotAfter
}

type caIndex struct {
	bySerial map[string]*authority.CertRecord
	nodes    map[string]authority.NodeRecord
}

func index(ca CA) caIndex {
	ix := caIndex{bySerial: make(map[string]*authority.CertRecord, len(ca.Certs)), nodes: ca.Nodes}
	for i := range ca.Certs {
		ix.bySerial[NormSerial(ca.Certs[i].Serial)] = &ca.Certs[i]
	}
	return ix
}

// Join classifies every fetched node against the CA's records, in the
// order given.
func Join(fetched []Fetched, ca CA, o JoinOptions) []NodeStatus {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	ix := index(ca)
	out := make([]NodeStatus, len(fetched))
	for i := range fetched {
		out[i] = classify(fetched[i], ix, o)
	}
	return out
}

func classify(f Fetched, ix caIndex, o JoinOptions) NodeStatus {
	s := NodeStatus{ID: f.ID, Address: f.Address}
	add := func(state, format string, args ...any) {
		if !s.Has(state) {
			s.States = append(s.States, state)
		}
		if format != "" {
			s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
		}
	}
	n, known := ix.nodes[f.ID]
	var cur *authority.CertRecord
	if known {
		cur = ix.bySerial[NormSerial(n.Current)]
	}
	if cur != nil {
		s.Issued, s.IssuedAt, s.IssuedNotAfter = cur.Serial, cur.IssuedAt, cur.NotAfter
	} else {
		add(StateNotIssued, "the CA has no certificate for %s: certkeeper ca issue", f.ID)
	}
	var rep *Report
	switch {
	case f.NotReport:
	case f.Err != nil:
		add(StateUnreachable, "%v", f.Err)
	case f.Data != nil:
		r, err := ParseReport(f.Data)
		if err != nil {
			add(StateBadReport, "%s: %v", f.ID, err)
		} else {
			rep = r
		}
	}
	if rep != nil {
		s.AgentVersion, s.ReportWritten = rep.AgentVersion, rep.Written
		if stale, age := ReportStale(rep, o.Now, o.ReportStaleAfter); stale {
			add(StateReportStale, "the report was last written %s ago (at %s), %s: the agent is not running or hangs, and what the report says is old; see systemctl status certkeeper on the node",
				age.Round(time.Second), rotate.Stamp(rep.Written), heartbeatText(rep.Heartbeat))
		}
		b := pickBundle(rep, f.ID, ix, o.Bundle)
		if b == nil {
			add(StateNotFound, "the report of %s has no bundle holding a certificate the CA issued to it", f.ID)
		} else {
			s.Bundle, s.Installed, s.InstalledNotAfter, s.Served = b.Name, b.Serial, b.NotAfter, b.ServedSerial
			s.Health, s.HealthText = b.Health, b.HealthText
			if b.Health != "" && b.Health != "OK" {
				add(StateUnhealthy, "%s: %s", b.Health, b.HealthText)
			}
			if !rep.Stopped.IsZero() {
				add(StateStopped, "the agent stopped at %s; nothing repairs or renews", rotate.Stamp(rep.Stopped))
			}
		}
	}
	if f.Probed {
		switch {
		case f.ProbeErr != nil && f.Served == "":
			add(StateUnreachable, "probe: %v", f.ProbeErr)
		case f.ProbeErr != nil:
			// Served, but not by this CA (or not verifiable).
			s.Served = f.Served
			add(StateUnhealthy, "probe: %v", f.ProbeErr)
		case f.Served != "":
			s.Served = f.Served
		}
	}
	installed := NormSerial(s.Installed)
	if installed == "" && f.NotReport {
		// Probe only: what is served is what we know is installed.
		installed = NormSerial(s.Served)
		s.Installed = s.Served
		if c := ix.bySerial[installed]; c != nil {
			s.InstalledNotAfter = c.NotAfter
		}
	}
	if installed != "" {
		if c := ix.bySerial[installed]; c != nil && c.Revoked != nil {
			if known && n.Revoked != nil {
				// Retired (ca revoke ID): there is no current one to push.
				add(StateRevoked, "installed certificate %s was revoked at %s with the node itself (retired): stop its daemon and remove it from the inventory, or take it back with certkeeper ca issue node %s --force",
					s.Installed, rotate.Stamp(c.Revoked.At), f.ID)
			} else {
				add(StateRevoked, "installed certificate %s was revoked at %s: push the current one", s.Installed, rotate.Stamp(c.Revoked.At))
			}
		}
		if cur != nil && installed != NormSerial(cur.Serial) {
			if age := o.Now.Sub(cur.IssuedAt); age > o.StaleAfter {
				add(StateStale, "issued %s %s ago, still installed: %s", cur.Serial, age.Round(time.Minute), s.Installed)
			} else {
				add(StatePending, "")
			}
		}
		if !s.InstalledNotAfter.IsZero() && !o.Now.Before(s.InstalledNotAfter) {
			add(StateExpired, "installed certificate expired at %s", rotate.Stamp(s.InstalledNotAfter))
		}
	}
	if served := NormSerial(s.Served); served != "" && installed != "" && served != installed {
		add(StateServedOld, "the daemon serves %s, not the installed %s: reload it", s.Served, s.Installed)
	}
	if len(s.States) == 0 {
		s.States = []string{StateOK}
	}
	return s
}

func pickBundle(r *Report, id string, ix caIndex, name string) *BundleReport {
	if name != "" {
		for i := range r.Bundles {
			if r.Bundles[i].Name == name {
				return &r.Bundles[i]
			}
		}
		return nil
	}
	for i := range r.Bundles {
		if c := ix.bySerial[NormSerial(r.Bundles[i].Serial)]; c != nil && c.ID == id {
			return &r.Bundles[i]
		}
	}
	if len(r.Bundles) == 1 {
		return &r.Bundles[0]
	}
	return nil
}

// Summary counts the nodes per state.
type Summary struct {
	Nodes   int            `json:"nodes"`
	Healthy int            `json:"healthy"`
	States  map[string]int `json:"states"`
	// Weeks is the expiry histogram: how many nodes' certificates expire
	// in each week from now (week 0 is the next 7 days); Expired those
	// past it.
	Weeks   []WeekCount `json:"expiry_weeks"`
	Expired int         `json:"expired"`
}

// WeekCount is one bar of the expiry histogram.
type WeekCount struct {
	Week  int       `json:"week"`
	Start time.Time `json:"start"`
	Nodes int       `json:"nodes"`
}

// Summarize counts the nodes per state and builds the expiry histogram
// (weeks without a node are left out).
func Summarize(st []NodeStatus, now time.Time) Summary {
	s := Summary{Nodes: len(st), States: map[string]int{}}
	weeks := map[int]int{}
	for _, n := range st {
		if n.OK() {
			s.Healthy++
		}
		for _, x := range n.States {
			s.States[x]++
		}
		e := n.Expiry()
		if e.IsZero() {
			continue
		}
		if !now.Before(e) {
			s.Expired++
			continue
		}
		weeks[int(e.Sub(now)/(7*24*time.Hour))]++
	}
	for w, c := range weeks {
		s.Weeks = append(s.Weeks, WeekCount{Week: w, Start: now.Add(time.Duration(w) * 7 * 24 * time.Hour), Nodes: c})
	}
	sort.Slice(s.Weeks, func(i, j int) bool { return s.Weeks[i].Week < s.Weeks[j].Week })
	return s
}

func heartbeatText(seconds float64) string {
	if seconds <= 0 {
		return "older than allowed"
	}
	return "though a running agent rewrites it every " + time.Duration(seconds*float64(time.Second)).String()
}
