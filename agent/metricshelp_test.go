package agent

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The agent's metrics (textfile and /metrics) carry no empty "# HELP name"
// lines: VictoriaMetrics writes one per family when metadata is on.
func TestMetricsNoEmptyHelp(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var buf bytes.Buffer
	WriteMetrics(&buf, now, []BundleState{{Name: "b", NotAfter: now.Add(time.Hour)}}, now)
	if !strings.Contains(buf.String(), "# TYPE certkeeper_bundle_not_after_timestamp_seconds gauge\n") {
		t.Fatalf("no TYPE line:\n%s", buf.String())
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "#" && f[1] == "HELP" {
			t.Errorf("empty HELP line %q", line)
		}
	}
}
