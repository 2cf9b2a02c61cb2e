package agent

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// The agent's metrics (textfile and /metrics) carry no empty "# HELP name"
// lines (VictoriaMetrics writes one per family when metadata is on): each
// family has its text, and each is in docs/agent.md's table.
func TestMetricsHaveHelp(t *testing.T) {
	doc, err := os.ReadFile("../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, help := range metricHelp {
		if help == "" || !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s: help %q, or not in docs/agent.md", name, help)
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var buf bytes.Buffer
	WriteMetrics(&buf, now, []BundleState{{Name: "b", NotAfter: now.Add(time.Hour), RenewAt: now}}, now)
	if !strings.Contains(buf.String(), "# TYPE certkeeper_bundle_not_after_timestamp_seconds gauge\n") {
		t.Fatalf("no TYPE line:\n%s", buf.String())
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && !strings.Contains(buf.String(), "# HELP "+f[2]+" ") {
			t.Errorf("%s has no HELP text", f[2])
		}
		if f := strings.Fields(line); len(f) == 3 && f[0] == "#" && f[1] == "HELP" {
			t.Errorf("empty HELP line %q", line)
		}
	}
}
