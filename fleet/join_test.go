package fleet

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/authority"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// testCA: node n-ID has an old certificate "0A:ID" issued 30 days ago and
// a current "0B:ID" issued issuedAgo ago; revoked lists revoked serials.
func testCA(ids []string, issuedAgo time.Duration, revoked ...string) CA {
	ca := CA{Nodes: map[string]authority.NodeRecord{}}
	for i, id := range ids {
		old, cur := fmt.Sprintf("0A:%02X", i), fmt.Sprintf("0B:%02X", i)
		ca.Nodes[id] = authority.NodeRecord{ID: id, Current: cur}
		ca.Certs = append(ca.Certs,
			authority.CertRecord{ID: id, Serial: old, IssuedAt: t0.Add(-30 * 24 * time.Hour), NotAfter: t0.Add(60 * 24 * time.Hour)},
			authority.CertRecord{ID: id, Serial: cur, IssuedAt: t0.Add(-issuedAgo), NotAfter: t0.Add(89 * 24 * time.Hour)})
	}
	for i := range ca.Certs {
		if slices.Contains(revoked, ca.Certs[i].Serial) {
			ca.Certs[i].Revoked = &authority.Revocation{At: t0.Add(-time.Hour), Reason: 1}
		}
	}
	return ca
}

func report(serial, served, health string, mod ...func(*Report)) []byte {
	r := Report{NodeID: "x", AgentVersion: "0.1.0", Written: t0, Bundles: []BundleReport{{
		Name: "web", Serial: serial, ServedSerial: served, NotAfter: t0.Add(89 * 24 * time.Hour), Health: health, LastCheck: "ok", LastCheckAt: t0,
	}}}
	for _, m := range mod {
		m(&r)
	}
	return r.Marshal()
}

func TestJoinClassifies(t *testing.T) {
	ids := []string{"n0"}
	cases := []struct {
		name   string
		ca     CA
		f      Fetched
		states []string
		ok     bool
	}{
		{"installed, served, healthy", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0b:00", "0B:00", "OK")}, []string{StateOK}, true},
		{"serials compare without colons or case", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("b00", "", "OK")}, []string{StateOK}, true},
		{"unreachable", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Err: errors.New("dial: connection refused")}, []string{StateUnreachable}, false},
		{"damaged report", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: []byte("{")}, []string{StateBadReport}, false},
		{"stale: old installed, current issued 48h ago", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0A:00", "", "OK")}, []string{StateStale}, false},
		{"pending: current issued 1h ago", testCA(ids, time.Hour), Fetched{ID: "n0", Data: report("0A:00", "", "OK")}, []string{StatePending}, true},
		{"revoked but installed", testCA(ids, time.Hour, "0A:00"), Fetched{ID: "n0", Data: report("0A:00", "", "OK")}, []string{StateRevoked, StatePending}, false},
		{"serving an old certificate", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "0A:00", "OK")}, []string{StateServedOld}, false},
		{"unhealthy", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "", "WARNING")}, []string{StateUnhealthy}, false},
		{"not issued", testCA(nil, 0), Fetched{ID: "n0", Data: report("0B:00", "", "OK")}, []string{StateNotIssued}, false},
		{"no bundle of the CA's among two", testCA(ids, 0), Fetched{ID: "n0", Data: report("FF", "", "OK", func(r *Report) { r.Bundles = append(r.Bundles, r.Bundles[0]) })}, []string{StateNotFound}, false},
		{"agent stopped", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "", "OK", func(r *Report) { r.Stopped = t0 })}, []string{StateStopped}, false},
		{"expired", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "", "OK", func(r *Report) { r.Bundles[0].NotAfter = t0.Add(-time.Second) })}, []string{StateExpired}, false},
		{"probe only, serving the current", testCA(ids, 48*time.Hour), Fetched{ID: "n0", NotReport: true, Probed: true, Served: "0B:00"}, []string{StateOK}, true},
		{"probe only, serving the old", testCA(ids, 48*time.Hour), Fetched{ID: "n0", NotReport: true, Probed: true, Served: "0A:00"}, []string{StateStale}, false},
		{"probe: served, does not verify", testCA(ids, 48*time.Hour), Fetched{ID: "n0", NotReport: true, Probed: true, Served: "0B:00", ProbeErr: errors.New("does not verify")}, []string{StateUnhealthy}, false},
		{"probe fails", testCA(ids, 48*time.Hour), Fetched{ID: "n0", NotReport: true, Probed: true, ProbeErr: errors.New("refused")}, []string{StateUnreachable}, false},
		{"report within its heartbeats", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "0B:00", "OK", heartbeat(300, -14*time.Minute))}, []string{StateOK}, true},
		{"report older than three heartbeats: the agent is not running", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0B:00", "0B:00", "OK", heartbeat(300, -16*time.Minute))}, []string{StateReportStale}, false},
		{"an old report says what it said, and that it is old", testCA(ids, 48*time.Hour), Fetched{ID: "n0", Data: report("0A:00", "", "OK", heartbeat(300, -time.Hour))}, []string{StateReportStale, StateStale}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Join([]Fetched{c.f}, c.ca, JoinOptions{Now: t0, StaleAfter: 24 * time.Hour})[0]
			if !slices.Equal(got.States, c.states) || got.OK() != c.ok {
				t.Fatalf("states %v ok %v, want %v ok %v; problems: %v", got.States, got.OK(), c.states, c.ok, got.Problems)
			}
			if !c.ok && len(got.Problems) == 0 {
				t.Fatalf("%v without a problem text", got.States)
			}
		})
	}
}

// heartbeat gives a report a heartbeat (seconds) and a written time
// relative to t0.
func heartbeat(seconds float64, written time.Duration) func(*Report) {
	return func(r *Report) { r.Heartbeat, r.Written = seconds, t0.Add(written) }
}

// When a report's age means its agent is not running.
func TestReportStale(t *testing.T) {
	for _, c := range []struct {
		name    string
		r       Report
		after   time.Duration
		stale   bool
		wantAge time.Duration
	}{
		{"fresh", Report{Written: t0.Add(-time.Minute), Heartbeat: 300}, 0, false, time.Minute},
		{"at three heartbeats", Report{Written: t0.Add(-15 * time.Minute), Heartbeat: 300}, 0, false, 15 * time.Minute},
		{"past three heartbeats", Report{Written: t0.Add(-15*time.Minute - time.Second), Heartbeat: 300}, 0, true, 15*time.Minute + time.Second},
		{"a short heartbeat", Report{Written: t0.Add(-4 * time.Second), Heartbeat: 1}, 0, true, 4 * time.Second},
		{"a threshold given beats the heartbeat", Report{Written: t0.Add(-time.Hour), Heartbeat: 300}, 2 * time.Hour, false, time.Hour},
		{"a threshold given, no heartbeat", Report{Written: t0.Add(-time.Hour)}, 30 * time.Minute, true, time.Hour},
		// A running agent's report is up to a heartbeat old; a threshold
		// below that would call every running agent dead.
		{"a threshold below the heartbeat does not call a running agent dead", Report{Written: t0.Add(-46 * time.Second), Heartbeat: 300}, 5 * time.Second, false, 46 * time.Second},
		{"a threshold below the heartbeat: two heartbeats missed", Report{Written: t0.Add(-10*time.Minute - time.Second), Heartbeat: 300}, 5 * time.Second, true, 10*time.Minute + time.Second},
		{"no heartbeat (writes on change only): age says nothing", Report{Written: t0.Add(-30 * 24 * time.Hour)}, 0, false, 30 * 24 * time.Hour},
		{"stopped cleanly: that is agent-stopped", Report{Written: t0.Add(-time.Hour), Heartbeat: 300, Stopped: t0.Add(-time.Hour)}, 0, false, 0},
		{"from the future (clock skew)", Report{Written: t0.Add(time.Hour), Heartbeat: 300}, 0, false, 0},
		{"never written", Report{Heartbeat: 300}, 0, false, 0},
	} {
		stale, age := ReportStale(&c.r, t0, c.after)
		if stale != c.stale || (c.wantAge != 0 && age != c.wantAge) {
			t.Errorf("%s: stale %v age %v, want %v %v", c.name, stale, age, c.stale, c.wantAge)
		}
	}
}

func TestSummarizeHistogram(t *testing.T) {
	st := []NodeStatus{
		{ID: "a", States: []string{StateOK}, InstalledNotAfter: t0.Add(2 * 24 * time.Hour)},
		{ID: "b", States: []string{StateOK}, InstalledNotAfter: t0.Add(6 * 24 * time.Hour)},
		{ID: "c", States: []string{StateStale}, InstalledNotAfter: t0.Add(8 * 24 * time.Hour)},
		{ID: "d", States: []string{StateUnreachable}, IssuedNotAfter: t0.Add(30 * 24 * time.Hour)},
		{ID: "e", States: []string{StateExpired}, InstalledNotAfter: t0.Add(-time.Hour)},
		{ID: "f", States: []string{StateUnreachable}},
	}
	s := Summarize(st, t0)
	if s.Nodes != 6 || s.Healthy != 2 || s.Expired != 1 || s.States[StateUnreachable] != 2 {
		t.Fatalf("%+v", s)
	}
	var got []string
	for _, w := range s.Weeks {
		got = append(got, fmt.Sprintf("%d:%d", w.Week, w.Nodes))
	}
	if strings.Join(got, " ") != "0:2 1:1 4:1" {
		t.Fatalf("histogram %v", got)
	}
}

func TestReportBounds(t *testing.T) {
	r := Report{NodeID: "n", Bundles: make([]BundleReport, MaxReportBundles+5)}
	for i := range r.Bundles {
		r.Bundles[i] = BundleReport{Name: fmt.Sprint("b", i), LastError: strings.Repeat("é", 2*MaxReportText), Health: "OK"}
	}
	data := r.Marshal()
	if len(data) > MaxReportSize {
		t.Fatalf("a full report is %d bytes, over the %d limit", len(data), MaxReportSize)
	}
	back, err := ParseReport(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Bundles) != MaxReportBundles || len(back.Bundles[0].LastError) > MaxReportText || !strings.HasSuffix(back.Bundles[0].LastError, "...") {
		t.Fatalf("bundles %d, error %d bytes", len(back.Bundles), len(back.Bundles[0].LastError))
	}
	for _, bad := range [][]byte{
		make([]byte, MaxReportSize+1),
		[]byte(strings.Repeat("{", maxReportObjects+1)),
		[]byte(`{"format":2}`),
		[]byte(`not json`),
	} {
		if _, err := ParseReport(bad); err == nil {
			t.Errorf("%.20q parsed", bad)
		}
	}
}

func TestPlanWaves(t *testing.T) {
	cases := []struct {
		n, canary int
		sizes     []int
		want      string
	}{
		{20, 2, nil, "[[0 2] [2 20]]"},
		{20, 2, []int{5}, "[[0 2] [2 7] [7 12] [12 17] [17 20]]"},
		{20, 2, []int{3, 10}, "[[0 2] [2 5] [5 15] [15 20]]"},
		{20, 0, []int{10}, "[[0 10] [10 20]]"},
		{3, 5, nil, "[[0 3]]"},
		{0, 2, nil, "[]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(PlanWaves(c.n, c.canary, c.sizes)); got != c.want {
			t.Errorf("PlanWaves(%d, %d, %v) = %s, want %s", c.n, c.canary, c.sizes, got, c.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	since := t0.Add(-time.Minute)
	w := Want{Serial: "0B:00", Since: since}
	b := func(m func(*BundleReport)) *Report {
		r := &Report{Bundles: []BundleReport{{Name: "web", Serial: "0B:00", LastCheck: "ok", LastCheckAt: t0, Health: "OK"}}}
		m(&r.Bundles[0])
		return r
	}
	cases := []struct {
		name   string
		r      *Report
		done   bool
		failed bool
		says   string // in the failure's detail
	}{
		{"installed and checked", b(func(*BundleReport) {}), true, false, ""},
		{"served the new one", b(func(x *BundleReport) { x.ServedSerial = "0b:00" }), true, false, ""},
		{"still serving the old one", b(func(x *BundleReport) { x.ServedSerial = "0A:00" }), false, false, ""},
		{"not installed yet", b(func(x *BundleReport) { x.Serial = "0A:00"; x.LastCheckAt = since.Add(-time.Hour) }), false, false, ""},
		{"check ran before the push", b(func(x *BundleReport) { x.LastCheckAt = since.Add(-time.Second) }), false, false, ""},
		{"reload owed", b(func(x *BundleReport) { x.Owed = "reload" }), false, false, ""},
		{"check failed after the push", b(func(x *BundleReport) { x.Serial = "0A:00"; x.LastCheck = "failed" }), false, true, "rolled back to serial 0A:00; its check failed at "},
		{"served check failed, rolled back", b(func(x *BundleReport) {
			x.Serial, x.ServedSerial, x.LastCheck, x.Health = "0A:00", "0A:00", "failed", "WARNING"
			x.HealthText = "check failed at 2026-12-01 10:00:00 UTC: served check: 127.0.0.1:1 serves serial 0a:00, not the live serial 0b:00: the daemon did not take its reload"
		}), false, true, "rolled back to serial 0A:00; the agent says: check failed at 2026-12-01 10:00:00 UTC: served check: "},
		{"check failed, rollback refused: still live", b(func(x *BundleReport) {
			x.LastCheck, x.Health, x.HealthText = "failed", "WARNING", "check failed at 2026-12-01 10:00:00 UTC: exit 1; rollback refused: nothing to go back to"
		}), false, true, "the agent says: check failed"},
		{"install refused after the push", b(func(x *BundleReport) {
			x.Serial = "0A:00"
			x.LastError = "rejected"
			x.LastErrorAt = t0
			x.LastCheckAt = since.Add(-time.Hour)
		}), false, true, ""},
		{"installed but critical", b(func(x *BundleReport) { x.Health = "CRITICAL" }), false, true, ""},
		// Most bundles have no check command: they are confirmed by an
		// install after the push, the serial, nothing owed (the reload
		// ran), what is served, health.
		{"no check configured: installed, reloaded, served", b(func(x *BundleReport) {
			x.NoCheck, x.LastCheck, x.LastCheckAt, x.ServedSerial, x.LastChange = true, "", time.Time{}, "0B:00", t0
		}), true, false, ""},
		// A push that keeps the serial (a CA rotation's trust file, a
		// CRL) is confirmed by a change after the push, not by the
		// serial the node had before it.
		{"no check configured: nothing changed since the push", b(func(x *BundleReport) {
			x.NoCheck, x.LastCheck, x.LastCheckAt, x.ServedSerial, x.LastChange = true, "", time.Time{}, "0B:00", since.Add(-time.Second)
		}), false, false, ""},
		// The agent took the push and found it already live: nothing is
		// coming, with or without a check.
		{"no check configured: the push found already live", b(func(x *BundleReport) {
			x.NoCheck, x.LastCheck, x.LastCheckAt, x.LastChange, x.LastDelivery = true, "", time.Time{}, since.Add(-time.Hour), t0
		}), true, false, ""},
		{"checked bundle: the push found already live", b(func(x *BundleReport) {
			x.LastCheckAt, x.LastChange, x.LastDelivery = since.Add(-time.Hour), since.Add(-time.Hour), t0
		}), true, false, ""},
		{"checked bundle: the push not taken yet", b(func(x *BundleReport) {
			x.LastCheckAt, x.LastChange, x.LastDelivery = since.Add(-time.Hour), since.Add(-time.Hour), since.Add(-time.Hour)
		}), false, false, ""},
		{"no check configured: reload owed", b(func(x *BundleReport) { x.NoCheck, x.LastCheck, x.LastCheckAt, x.Owed = true, "", time.Time{}, "reload" }), false, false, ""},
		{"no check configured: not installed yet", b(func(x *BundleReport) {
			x.NoCheck, x.LastCheck, x.LastCheckAt, x.Serial = true, "", time.Time{}, "0A:00"
		}), false, false, ""},
	}
	for _, c := range cases {
		done, why := Verdict(c.r, w)
		if done != c.done || (why != "") != c.failed || !strings.Contains(why, c.says) {
			t.Errorf("%s: done %v failed %q", c.name, done, why)
		}
		if strings.Contains(why, "rolled back to serial") != strings.HasPrefix(c.says, "rolled back") {
			t.Errorf("%s: %q says rolled back wrongly", c.name, why)
		}
	}
}

// A node retired with `ca revoke ID` has no current certificate to push:
// the problem says it is retired and what to do, not "push the current
// one", which would push the revoked bundle again.
func TestRetiredNodeIsNotToldToPush(t *testing.T) {
	ca := testCA([]string{"n0"}, 48*time.Hour, "0B:00")
	n := ca.Nodes["n0"]
	n.Revoked = &authority.Revocation{At: t0.Add(-time.Hour), Reason: 0}
	ca.Nodes["n0"] = n
	got := Join([]Fetched{{ID: "n0", Data: report("0B:00", "", "OK")}}, ca, JoinOptions{Now: t0, StaleAfter: 24 * time.Hour})[0]
	if !got.Has(StateRevoked) {
		t.Fatalf("states %v", got.States)
	}
	text := strings.Join(got.Problems, "\n")
	// Times in a problem's text read as in status and check, not RFC 3339.
	if strings.Contains(text, "push the current one") || !strings.Contains(text, "retired") || !strings.Contains(text, "revoked at 2026-12-01 11:00:00 UTC") {
		t.Errorf("problems of a retired node: %s", text)
	}
}
