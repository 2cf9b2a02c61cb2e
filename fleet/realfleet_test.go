//go:build unix

package fleet_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/pki"
)

// reissueAll has the CA issue every node a new certificate (one run) and
// returns the new serials.
func (f *agentFleet) reissueAll(t *testing.T) map[string]string {
	t.Helper()
	var reqs []authority.Request
	for _, id := range f.ids {
		r, err := authority.NodeRequest(id, authority.Names{}, "")
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	f.issue(t, reqs...)
	out := map[string]string{}
	for _, id := range f.ids {
		out[id] = pki.Serial(f.published(t, id))
		if same(out[id], f.node[id].firstSerial) {
			t.Fatalf("%s: the CA issued no new certificate", id)
		}
	}
	return out
}

func (f *agentFleet) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.caDir, "cluster.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatal("cluster.crt: no certificate")
	}
	return p
}

// servedNow is the serial the node's daemon serves, as the admin host's
// probe sees it (verified against the CA).
func (f *agentFleet) servedNow(t *testing.T, id string) string {
	t.Helper()
	s, err := fleet.Probe(context.Background(), f.node[id].daemon.Addr, "", f.roots(t), 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return s
}

func liveSerial(t *testing.T, an *agentNode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(an.live, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.Serial(parseCert(t, data))
}

// fleet status over 22 real nodes, each a real sshd, a real agent and a
// real mutual-TLS daemon. The CA issues every node a new certificate and
// the real push sends it to every inbox; the agents install it, reload
// their daemons and check what they serve. Then: one node's sshd is
// killed (down), one is issued a newer certificate that is never pushed
// (stale), one's installed certificate is revoked, and one's daemon
// ignores SIGHUP, so it still serves the first certificate: its agent
// reloads it twice more and then, as its bundle's served_mismatch =
// "report" says, keeps the new bundle live and reports the mismatch.
// fleet status reports exactly those four, the 18 others OK, in its
// table, its JSON and a textfile that parses as Prometheus text.
func TestFleetStatusOverRealAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 22 sshd, 22 daemons and 22 agents")
	}
	const down, stale, revoked, servedOld = "node-03", "node-07", "node-11", "node-15"
	start := time.Now()
	f := newAgentFleet(t, 22, 0, func(id string) nodeSpec {
		if id == servedOld {
			return nodeSpec{IgnoreHUP: true, Policy: agent.ServedReport}
		}
		return nodeSpec{}
	})
	t.Logf("22 nodes up (sshd, daemon, agent, first certificate served) in %s", time.Since(start).Round(time.Millisecond))

	want := f.reissueAll(t)
	pushed := time.Now()
	for _, r := range distribute.Push(context.Background(), f.nodes(t), distribute.PushOptions{CADir: f.caDir, Concurrency: 8}) {
		if r.Err != nil {
			t.Fatalf("push: %v", r.Err)
		}
	}
	for _, id := range f.ids {
		if id == servedOld {
			f.waitReport(t, id, "the served check's report", 30*time.Second, func(b *fleet.BundleReport) bool {
				return same(b.Serial, want[id]) && same(b.ServedSerial, f.node[id].firstSerial) && b.Health == "CRITICAL" && b.Owed == "" &&
					strings.Contains(f.node[id].agentLog(), "reported, the live bundle stays")
			})
			continue
		}
		f.waitReport(t, id, "the new certificate installed, checked and served", 30*time.Second, func(b *fleet.BundleReport) bool {
			done, why := fleet.Verdict(&fleet.Report{Bundles: []fleet.BundleReport{*b}}, fleet.Want{Serial: want[id], Since: pushed.Add(-time.Second)})
			if why != "" {
				t.Fatalf("%s: %s", id, why)
			}
			return done
		})
	}
	t.Logf("pushed to 22 nodes and every agent settled in %s", time.Since(pushed).Round(time.Millisecond))

	// The daemon that ignores SIGHUP: the agent's served check caught it,
	// reloaded twice more, then ended as the policy says (report: the new
	// bundle stays live, the daemon still serves the first certificate).
	sn := f.node[servedOld]
	if !strings.Contains(sn.agentLog(), "reported, the live bundle stays") {
		t.Errorf("%s: the agent did not report the mismatch:\n%s", servedOld, sn.agentLog())
	}
	if n := sn.hups(); n != 1+agent.ServedMaxReloads {
		t.Errorf("%s: %d SIGHUPs, want %d (the reload and %d more):\n%s", servedOld, n, 1+agent.ServedMaxReloads, agent.ServedMaxReloads, sn.daemon.Log())
	}
	if got := liveSerial(t, sn); !same(got, want[servedOld]) {
		t.Errorf("%s: live %s, want the new %s (served_mismatch = report keeps it)", servedOld, got, want[servedOld])
	}
	if got := f.servedNow(t, servedOld); !same(got, sn.firstSerial) {
		t.Errorf("%s: the daemon serves %s, want the first %s", servedOld, got, sn.firstSerial)
	}
	if got := f.servedNow(t, "node-00"); !same(got, want["node-00"]) {
		t.Errorf("node-00: the daemon serves %s, want the new %s", got, want["node-00"])
	}

	// The fleet diverges.
	f.reissue(t, stale)
	if _, err := f.ca.Revoke(want[revoked], 1); err != nil {
		t.Fatal(err)
	}
	f.servers[down].Kill()

	ca, err := fleet.LoadCA(f.caDir)
	if err != nil {
		t.Fatal(err)
	}
	collected := time.Now()
	fetched := fleet.Collect(context.Background(), f.nodes(t), fleet.CollectOptions{Concurrency: 8})
	t.Logf("fleet status read 22 reports over SFTP in %s", time.Since(collected).Round(time.Millisecond))
	// The stale node's newer certificate was issued just now: the admin
	// host looks a minute later with a 30 s threshold instead of waiting
	// a day. The agents' reports (heartbeat 5 min) are not old by then.
	now := time.Now().Add(time.Minute)
	st := fleet.Join(fetched, ca, fleet.JoinOptions{Now: now, StaleAfter: 30 * time.Second})
	wantStates := map[string][]string{
		down: {fleet.StateUnreachable}, stale: {fleet.StateStale}, revoked: {fleet.StateRevoked},
		// The agent itself judges a daemon serving another leaf CRITICAL.
		servedOld: {fleet.StateUnhealthy, fleet.StateServedOld},
	}
	for _, s := range st {
		w, ok := wantStates[s.ID]
		if !ok {
			w = []string{fleet.StateOK}
		}
		if !slices.Equal(s.States, w) {
			t.Errorf("%s: %v, want %v: %v", s.ID, s.States, w, s.Problems)
		}
		switch s.ID {
		case down:
		case servedOld:
			if !same(s.Installed, want[s.ID]) || !same(s.Served, sn.firstSerial) {
				t.Errorf("%s: installed %s served %s", s.ID, s.Installed, s.Served)
			}
		case stale:
			if same(s.Issued, s.Installed) || !same(s.Installed, want[s.ID]) {
				t.Errorf("%s: issued %s installed %s", s.ID, s.Issued, s.Installed)
			}
		default:
			if !same(s.Issued, want[s.ID]) || !same(s.Installed, want[s.ID]) || !same(s.Served, want[s.ID]) {
				t.Errorf("%s: issued %s installed %s served %s, want %s", s.ID, s.Issued, s.Installed, s.Served, want[s.ID])
			}
		}
	}
	sum := fleet.Summarize(st, now)
	if sum.Nodes != 22 || sum.Healthy != 18 {
		t.Errorf("summary %+v", sum)
	}

	var text bytes.Buffer
	fleet.WriteText(&text, st, sum)
	if !strings.Contains(text.String(), "22 node(s): 18 healthy, 4 not, 1 unreachable, 1 stale, 1 revoked-installed, 1 serving-old, 1 unhealthy\n") {
		t.Errorf("text:\n%s", text.String())
	}
	t.Logf("fleet status:\n%s", text.String())

	data, err := json.Marshal(struct {
		Nodes   []fleet.NodeStatus `json:"nodes"`
		Summary fleet.Summary      `json:"summary"`
	}{st, sum})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Nodes []struct {
			ID     string   `json:"id"`
			States []string `json:"states"`
		} `json:"nodes"`
		Summary struct {
			Healthy int            `json:"healthy"`
			States  map[string]int `json:"states"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(data, &back); err != nil || back.Summary.Healthy != 18 || back.Summary.States[fleet.StateOK] != 18 || len(back.Nodes) != 22 {
		t.Errorf("JSON: %v %+v", err, back.Summary)
	}

	tf := filepath.Join(t.TempDir(), "certkeeper_fleet.prom")
	if err := fleet.WriteTextfile(tf, st, sum, now); err != nil {
		t.Fatal(err)
	}
	prom, err := os.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	m := fleet.ParseMetrics(t, prom)
	for k, v := range map[string]float64{
		fleet.MetricNodeState + ",node=" + servedOld + ",state=serving-old":     1,
		fleet.MetricNodeState + ",node=" + down + ",state=unreachable":          1,
		fleet.MetricNodeState + ",node=" + stale + ",state=stale":               1,
		fleet.MetricNodeState + ",node=" + revoked + ",state=revoked-installed": 1,
		fleet.MetricNodeOK + ",node=node-00":                                    1,
		fleet.MetricNodeOK + ",node=" + revoked:                                 0,
		fleet.MetricNodes + ",health=unhealthy":                                 4,
		fleet.MetricNodes + ",health=healthy":                                   18,
		fleet.MetricStateNodes + ",state=ok":                                    18,
	} {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("metric %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}

// A canary push to 20 real nodes where one canary's check fails: that
// node's check command (in its bundle's config) exits 1. Its agent
// installs the new certificate, reloads, runs the check, rolls back and
// reloads again, and its report says the check failed; the rollout stops
// after the canary wave. The other canaries run the new certificate,
// their daemons serve it; nothing was pushed to the 17 others (empty
// inboxes, the first certificate live and served, no reload). The
// outcome table says which node has what.
func TestCanaryRolloutOverRealAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 sshd, 20 daemons and 20 agents")
	}
	const failing = "node-01"
	f := newAgentFleet(t, 20, 0, func(id string) nodeSpec {
		if id == failing {
			return nodeSpec{Check: []string{"/bin/sh", "-c", "echo the daemon does not answer its health check >&2; exit 1"}}
		}
		return nodeSpec{}
	})
	want := f.reissueAll(t)

	var waves []int
	out, err := fleet.Rollout(context.Background(), f.nodes(t), fleet.RolloutOptions{
		Push:   distribute.PushOptions{CADir: f.caDir, Concurrency: 8},
		Canary: 3, Waves: []int{5},
		Want: func(n distribute.Node) (fleet.Want, error) {
			return fleet.Want{Serial: pki.Serial(f.published(t, n.ID))}, nil
		},
		Wait: 30 * time.Second, Poll: 100 * time.Millisecond,
		WaveDone: func(w int, _ []fleet.NodeOutcome) { waves = append(waves, w) },
	})
	if !errors.Is(err, fleet.ErrRolloutStopped) {
		t.Fatalf("rollout: %v", err)
	}
	var table bytes.Buffer
	fleet.WriteOutcomes(&table, out)
	t.Logf("outcomes:\n%s", table.String())
	if len(waves) != 1 || waves[0] != 0 {
		t.Fatalf("waves run: %v, want only the canary wave", waves)
	}
	lines := strings.Split(table.String(), "\n")
	for i, o := range out {
		an := f.node[o.ID]
		row := strings.Fields(lines[i+1])
		switch {
		case o.ID == failing:
			if o.Outcome != fleet.OutcomeFailed || !strings.Contains(o.Detail, "check failed") || !same(o.Serial, want[o.ID]) {
				t.Errorf("%s: %s %q", o.ID, o.Outcome, o.Detail)
			}
			// Its agent rolled back: the first certificate live again
			// and served after the rollback's reload.
			f.waitReport(t, o.ID, "the rollback", 30*time.Second, func(b *fleet.BundleReport) bool {
				return same(b.Serial, an.firstSerial) && same(b.ServedSerial, an.firstSerial) && b.Owed == ""
			})
			if got := f.servedNow(t, o.ID); !same(got, an.firstSerial) {
				t.Errorf("%s: serves %s after the rollback, want the first %s", o.ID, got, an.firstSerial)
			}
			if !strings.Contains(an.agentLog(), "check failed after the install; rolling back") {
				t.Errorf("%s: no rollback in the agent's log:\n%s", o.ID, an.agentLog())
			}
		case o.Wave == 0:
			// The other canaries: confirmed, or still pushed when the
			// failure stopped the wait first; either way their agents
			// install the new certificate and their daemons serve it.
			if o.Outcome != fleet.OutcomeConfirmed && o.Outcome != fleet.OutcomePushed {
				t.Errorf("%s: %s %q", o.ID, o.Outcome, o.Detail)
			}
			if o.Outcome == fleet.OutcomeConfirmed && (!same(o.Installed, want[o.ID]) || !same(o.Served, want[o.ID]) || row[4] != o.Installed) {
				t.Errorf("%s: confirmed, but installed %q served %q; row %q", o.ID, o.Installed, o.Served, lines[i+1])
			}
			f.waitReport(t, o.ID, "the new certificate", 30*time.Second, func(b *fleet.BundleReport) bool {
				return same(b.Serial, want[o.ID]) && same(b.ServedSerial, want[o.ID])
			})
		default:
			if o.Outcome != fleet.OutcomeNotPushed || o.Installed != "" || row[2] != fleet.OutcomeNotPushed {
				t.Errorf("%s (wave %d): %s, installed %q", o.ID, o.Wave, o.Outcome, o.Installed)
			}
		}
	}
	// Nothing reached the nodes of later waves.
	for _, o := range out {
		if o.Wave == 0 {
			continue
		}
		an := f.node[o.ID]
		if ents, _ := os.ReadDir(an.inbox); len(ents) != 0 {
			t.Errorf("%s got %d files though its wave never ran", o.ID, len(ents))
		}
		r, err := f.report(o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if b := r.Bundles[0]; !same(b.Serial, an.firstSerial) || !same(b.ServedSerial, an.firstSerial) {
			t.Errorf("%s: report says installed %s served %s, want the first %s", o.ID, b.Serial, b.ServedSerial, an.firstSerial)
		}
		if got := liveSerial(t, an); !same(got, an.firstSerial) {
			t.Errorf("%s: live %s, want the first %s", o.ID, got, an.firstSerial)
		}
		if n := an.hups(); n != 0 {
			t.Errorf("%s: its daemon was reloaded %d times", o.ID, n)
		}
	}
	if got := f.servedNow(t, "node-19"); !same(got, f.node["node-19"].firstSerial) {
		t.Errorf("node-19 serves %s, want the first %s", got, f.node["node-19"].firstSerial)
	}
}

// A node whose agent died (SIGKILL) while its sshd still answers shows a
// report that stops moving: fleet status calls it report-stale once it is
// older than three heartbeats, while a running agent's report, unchanged,
// keeps being rewritten, and an agent that stopped cleanly is
// agent-stopped. The agents here beat every second.
func TestFleetStatusSeesADeadAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 sshd, 3 daemons and 3 agents, one a child process")
	}
	const live, dead, stopped = "node-00", "node-01", "node-02"
	const heartbeat = time.Second
	f := newAgentFleet(t, 3, heartbeat, func(id string) nodeSpec { return nodeSpec{Child: id == dead} })
	first, err := f.report(live)
	if err != nil {
		t.Fatal(err)
	}
	if first.Heartbeat != heartbeat.Seconds() {
		t.Fatalf("report heartbeat %v, want %v", first.Heartbeat, heartbeat.Seconds())
	}
	f.killAgent(t, dead)
	killed := time.Now()
	f.node[stopped].stop()
	last, err := f.report(dead)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: three heartbeats and a bit.
	deadline := killed.Add(fleet.ReportHeartbeats*heartbeat + 5*time.Second)
	for time.Since(last.Written) <= fleet.ReportHeartbeats*heartbeat+500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("the dead agent's report %v is still not old", last.Written)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, err := f.report(live)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Written.After(killed) || !same(r.Bundles[0].Serial, first.Bundles[0].Serial) {
		t.Fatalf("the running agent's unchanged report was not rewritten: written %v (killed at %v)", r.Written, killed)
	}
	if again, _ := f.report(dead); !again.Written.Equal(last.Written) {
		t.Fatalf("the dead agent's report moved: %v then %v", last.Written, again.Written)
	}

	ca, err := fleet.LoadCA(f.caDir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	st := fleet.Join(fleet.Collect(context.Background(), f.nodes(t), fleet.CollectOptions{}), ca, fleet.JoinOptions{Now: now})
	wantStates := map[string][]string{live: {fleet.StateOK}, dead: {fleet.StateReportStale}, stopped: {fleet.StateStopped}}
	for _, s := range st {
		if !slices.Equal(s.States, wantStates[s.ID]) {
			t.Errorf("%s: %v, want %v: %v", s.ID, s.States, wantStates[s.ID], s.Problems)
		}
	}
	sum := fleet.Summarize(st, now)
	var text bytes.Buffer
	fleet.WriteText(&text, st, sum)
	if !strings.Contains(text.String(), dead+": the report was last written") || !strings.Contains(text.String(), "3 node(s): 1 healthy, 2 not, 1 report-stale, 1 agent-stopped") {
		t.Errorf("text:\n%s", text.String())
	}
	var prom bytes.Buffer
	fleet.WriteMetrics(&prom, st, sum, now)
	m := fleet.ParseMetrics(t, prom.Bytes())
	if m[fleet.MetricNodeState+",node="+dead+",state=report-stale"] != 1 || m[fleet.MetricNodeOK+",node="+dead] != 0 {
		t.Errorf("metrics:\n%s", prom.String())
	}
	t.Logf("fleet status:\n%s", text.String())
}

// A canary whose daemon ignores SIGHUP, with served_mismatch = "rollback":
// its agent's served check sees the old certificate still served, reloads
// twice more, then rolls back to the certificate the daemon serves; its
// report says the new one was not kept, so the rollout stops after the
// canary and the other nodes are not pushed to.
func TestCanaryStopsAtADaemonThatIgnoresItsReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4 sshd, 4 daemons and 4 agents")
	}
	const canary = "node-00"
	f := newAgentFleet(t, 4, 0, func(id string) nodeSpec {
		if id == canary {
			return nodeSpec{IgnoreHUP: true, Policy: agent.ServedRollback}
		}
		return nodeSpec{}
	})
	want := f.reissueAll(t)
	out, err := fleet.Rollout(context.Background(), f.nodes(t), fleet.RolloutOptions{
		Push:   distribute.PushOptions{CADir: f.caDir, Concurrency: 4},
		Canary: 1,
		Want: func(n distribute.Node) (fleet.Want, error) {
			return fleet.Want{Serial: want[n.ID]}, nil
		},
		Wait: 30 * time.Second, Poll: 100 * time.Millisecond,
	})
	var table bytes.Buffer
	fleet.WriteOutcomes(&table, out)
	t.Logf("outcomes:\n%s", table.String())
	if !errors.Is(err, fleet.ErrRolloutStopped) {
		t.Fatalf("rollout: %v", err)
	}
	an := f.node[canary]
	if o := out[0]; o.Outcome != fleet.OutcomeFailed || !strings.Contains(o.Detail, "rolled back to serial") || !strings.Contains(o.Detail, "did not take its reload") || !same(o.Installed, an.firstSerial) {
		t.Errorf("%s: %s, installed %s: %q", o.ID, o.Outcome, o.Installed, o.Detail)
	}
	if !strings.Contains(an.agentLog(), "rolling back") {
		t.Errorf("%s: no rollback in the agent's log:\n%s", canary, an.agentLog())
	}
	if got := liveSerial(t, an); !same(got, an.firstSerial) {
		t.Errorf("%s: live %s after the rollback, want the first %s", canary, got, an.firstSerial)
	}
	f.waitReport(t, canary, "the served check after the rollback", 30*time.Second, func(b *fleet.BundleReport) bool {
		return same(b.Serial, an.firstSerial) && same(b.ServedSerial, an.firstSerial) && b.Owed == ""
	})
	if n := an.hups(); n < 1+agent.ServedMaxReloads {
		t.Errorf("%s: %d SIGHUPs, want the reload and %d more at least:\n%s", canary, n, agent.ServedMaxReloads, an.daemon.Log())
	}
	for _, o := range out[1:] {
		if o.Outcome != fleet.OutcomeNotPushed {
			t.Errorf("%s: %s", o.ID, o.Outcome)
		}
		if ents, _ := os.ReadDir(f.node[o.ID].inbox); len(ents) != 0 || f.node[o.ID].hups() != 0 {
			t.Errorf("%s: %d files in the inbox, %d reloads, though it was never pushed to", o.ID, len(ents), f.node[o.ID].hups())
		}
	}
}
