// Package fleet is the admin host's view of many nodes: the small report
// each agent keeps of its state (report.json), the join of those reports
// with the CA's records (what was issued against what is installed and
// served), the classification of each node, and staged pushes that go on
// only while the nodes already pushed to show their bundle installed,
// served and checked.
//
// The join and the classification are pure functions of their inputs and a
// clock; the I/O (SFTP, TLS probes) is a thin layer beside them.
package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ReportFileName is the report's name under the agent's state_dir.
const ReportFileName = "report.json"

// DefaultReportPath is where fleet status reads a node's report when the
// inventory names none: the default state_dir's report.
const DefaultReportPath = "/var/lib/certkeeper/" + ReportFileName

// ReportFormat is the version of the report's schema.
const ReportFormat = 1

// Bounds of a report: it is read from every node, so a node (or whoever
// controls one) can not make the admin host parse much. A bundle's entry
// is under 1 KiB; 64 bundles and 512-byte texts keep a report under 64 KiB.
const (
	MaxReportSize    = 64 << 10
	MaxReportBundles = 64
	MaxReportText    = 512
	maxReportObjects = 4 * MaxReportBundles
)

// Report is what an agent writes to <state_dir>/report.json: enough for
// the admin host to tell, per bundle, what is installed and served and
// whether it is well. It holds no key and no secret; it is mode 0644 so
// the push account (not root) can read it over SFTP.
type Report struct {
	Format       int       `json:"format"`
	NodeID       string    `json:"node_id"`
	AgentVersion string    `json:"agent_version"`
	PID          int       `json:"pid"`
	Written      time.Time `json:"written"`
	// Heartbeat is how often (seconds) the agent rewrites its report
	// while it runs, changed or not: a report much older than that is an
	// agent that is not running (ReportStale). 0: an agent that writes
	// only on change (no heartbeat; its age says nothing).
	Heartbeat float64        `json:"heartbeat_seconds,omitempty"`
	Stopped   time.Time      `json:"stopped,omitzero"`
	Bundles   []BundleReport `json:"bundles"`
}

// BundleReport is one bundle in a Report.
type BundleReport struct {
	Name     string    `json:"name"`
	NodeID   string    `json:"node_id,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// ServedSerial is the serial the daemon's TLS endpoint served when
	// the agent last looked; empty when the bundle names no endpoint (or
	// the agent does not check it).
	ServedSerial string    `json:"served_serial,omitempty"`
	ServedAt     time.Time `json:"served_checked,omitzero"`
	// LastChange is when the live certificate last changed (install).
	LastChange time.Time `json:"last_change,omitzero"`
	// LastDelivery is when the agent last took a delivery (inbox, pull,
	// install) and installed it or found it already live: a rollout's
	// proof that a push which changes nothing for this bundle was seen.
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	// Owed is what the live generation still owes (reload, check).
	Owed        string    `json:"owed,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastCheck is the result of the last check ("ok", "failed") and
	// LastCheckAt when it ran.
	LastCheck   string    `json:"last_check,omitempty"`
	LastCheckAt time.Time `json:"last_check_at,omitzero"`
	// NoCheck is set when the bundle has no check command: a rollout
	// then confirms it by its serial, nothing owed, what is served and
	// its health, since no check will ever run.
	NoCheck bool `json:"no_check,omitempty"`
	// Health is "OK", "WARNING", "CRITICAL" or "UNKNOWN", as check says.
	Health     string `json:"health"`
	HealthText string `json:"health_text,omitempty"`
}

// Clip shortens a text to the report's bound, on a rune boundary.
func Clip(s string) string {
	if len(s) <= MaxReportText {
		return s
	}
	s = s[:MaxReportText-3]
	for len(s) > 0 && !utf8Start(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	if len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "..."
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Marshal encodes a report within its bounds: extra bundles are dropped
// (the report says how many) and long texts clipped.
func (r Report) Marshal() []byte {
	r.Format = ReportFormat
	if len(r.Bundles) > MaxReportBundles {
		r.Bundles = r.Bundles[:MaxReportBundles]
	}
	bs := make([]BundleReport, len(r.Bundles))
	for i, b := range r.Bundles {
		b.Owed, b.LastError, b.HealthText = Clip(b.Owed), Clip(b.LastError), Clip(b.HealthText)
		b.Name, b.NodeID, b.Serial, b.ServedSerial = Clip(b.Name), Clip(b.NodeID), Clip(b.Serial), Clip(b.ServedSerial)
		bs[i] = b
	}
	r.Bundles = bs
	r.NodeID, r.AgentVersion = Clip(r.NodeID), Clip(r.AgentVersion)
	data, _ := json.MarshalIndent(r, "", "  ")
	return append(data, '\n')
}

// ParseReport decodes a report read from a node, refusing one larger than
// the bounds.
func ParseReport(data []byte) (*Report, error) {
	if len(data) > MaxReportSize {
		return nil, fmt.Errorf("report is %d bytes, larger than the %d-byte limit", len(data), MaxReportSize)
	}
	if n := bytes.Count(data, []byte("{")); n > maxReportObjects {
		return nil, fmt.Errorf("report has %d objects, more than the limit of %d", n, maxReportObjects)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report is damaged: %w", err)
	}
	if r.Format != ReportFormat {
		return nil, fmt.Errorf("report format %d is not %d: upgrade certkeeper on the admin host or the node", r.Format, ReportFormat)
	}
	if len(r.Bundles) > MaxReportBundles {
		return nil, fmt.Errorf("report has %d bundles, more than the limit of %d", len(r.Bundles), MaxReportBundles)
	}
	return &r, nil
}

// NormSerial makes serials comparable: openssl's colon hex and plain hex,
// any case, leading zeros aside.
func NormSerial(s string) string {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	s = strings.TrimLeft(s, "0")
	if s == "" && len(s) == 0 {
		return ""
	}
	return s
}
