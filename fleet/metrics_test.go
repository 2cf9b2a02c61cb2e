package fleet

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseMetrics parses a textfile as node_exporter's collector does.
func parseMetrics(t *testing.T, data []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the textfile does not parse: %v\n%s", err, data)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			v := m.GetUntyped().GetValue()
			if g := m.GetGauge(); g != nil {
				v = g.GetValue()
			}
			out[key] = v
		}
	}
	return out
}

func TestTextfileParses(t *testing.T) {
	st := Join([]Fetched{
		{ID: "n0", Data: report("0B:00", "", "OK")},
		{ID: `n1`, Data: report("0A:01", "", "OK")},
	}, testCA([]string{"n0", "n1"}, 48*time.Hour), JoinOptions{Now: t0})
	p := filepath.Join(t.TempDir(), "fleet.prom")
	if err := WriteTextfile(p, st, Summarize(st, t0), t0); err != nil {
		t.Fatal(err)
	}
	// Written again over the first: the one atomic write leaves the
	// textfile alone, 0644 for node_exporter, no temporary file beside it.
	if err := WriteTextfile(p, st, Summarize(st, t0), t0); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("the textfile's directory holds %v, want only fleet.prom", ents)
	}
	if fi, err := os.Stat(p); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644) {
		t.Fatalf("the textfile: %v %v, want 0644", fi, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := parseMetrics(t, data)
	for k, want := range map[string]float64{
		MetricNodeOK + ",node=n0":                1,
		MetricNodeOK + ",node=n1":                0,
		MetricNodeState + ",node=n1,state=stale": 1,
		MetricNodes + ",health=unhealthy":        1,
		MetricStateNodes + ",state=stale":        1,
		MetricNodeMatches + ",node=n1":           0,
		MetricExpiryWeek + ",week=12":            2,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v\n%s", k, got, ok, want, data)
		}
	}
}

// With metadata on, as the binary has it (package agent turns it on for
// every metrics set), every family of the textfile has a HELP that says
// what it is, not the empty "# HELP name" line VictoriaMetrics writes.
func TestTextfileHelp(t *testing.T) {
	metrics.ExposeMetadata(true)
	t.Cleanup(func() { metrics.ExposeMetadata(false) })
	st := Join([]Fetched{
		{ID: "n0", Data: report("0B:00", "", "OK")},
		{ID: "n1", Data: report("0A:01", "", "OK")},
	}, testCA([]string{"n0", "n1"}, 48*time.Hour), JoinOptions{Now: t0})
	sum := Summarize(st, t0)
	sum.Expired = 1
	var buf bytes.Buffer
	WriteMetrics(&buf, st, sum, t0)
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "#" && f[1] == "HELP" {
			t.Errorf("empty HELP line %q\n%s", line, buf.String())
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, buf.String())
	}
	for _, name := range []string{MetricNodeOK, MetricNodeState, MetricNodeNotAfter, MetricNodeMatches, MetricNodes, MetricStateNodes, MetricExpiryWeek, MetricLastRun} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s missing\n%s", name, buf.String())
			continue
		}
		if f.GetHelp() == "" || f.GetType().String() != "GAUGE" {
			t.Errorf("%s: help %q, type %v", name, f.GetHelp(), f.GetType())
		}
	}
}
