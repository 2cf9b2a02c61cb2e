package fleet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
)

// TestFleetScale measures push and fleet status against K real loopback
// sshd nodes (one sshd per node), and at K=100 parallel-scp and
// parallel-ssh doing the same transfers. Not part of normal runs:
//
//	CERTKEEPER_FLEET_SCALE=10,100,1000 go test -run FleetScale -v -timeout 60m ./fleet/
//
// 1,000 idle sshd take about 1.3 GB.
func TestFleetScale(t *testing.T) {
	env := os.Getenv("CERTKEEPER_FLEET_SCALE")
	if env == "" {
		t.Skip("set CERTKEEPER_FLEET_SCALE=10,100,1000 to run (starts that many sshd)")
	}
	conc := 32
	for _, f := range strings.Split(env, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprint("K=", k), func(t *testing.T) {
			start := time.Now()
			fl := newFleet(t, k)
			for _, id := range fl.ids {
				fl.writeReport(t, id, fl.published(t, id), "", agent.ResultOK)
			}
			setup := time.Since(start)
			nodes := fl.nodes(t)
			ca, err := fleet.LoadCA(fl.caDir)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			fetched := fleet.Collect(context.Background(), nodes, fleet.CollectOptions{Concurrency: conc})
			st := fleet.Join(fetched, ca, fleet.JoinOptions{Now: time.Now()})
			status := time.Since(t0)
			if s := fleet.Summarize(st, time.Now()); s.Healthy != k {
				t.Fatalf("%d of %d healthy: %+v", s.Healthy, k, st[0])
			}
			t1 := time.Now()
			for _, r := range distribute.Push(context.Background(), nodes, distribute.PushOptions{CADir: fl.caDir, Concurrency: conc}) {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			push := time.Since(t1)
			t.Logf("K=%d concurrency=%d: setup %s; fleet status %s (%.1f ms/node); push %s (%.1f ms/node)",
				k, conc, setup.Round(time.Millisecond), status.Round(time.Millisecond), float64(status.Microseconds())/1e3/float64(k),
				push.Round(time.Millisecond), float64(push.Microseconds())/1e3/float64(k))
			if k == 100 {
				pssh(t, fl, conc)
			}
		})
	}
}

// pssh does the same transfers with OpenSSH's clients: parallel-scp of
// the bundle's three files, parallel-ssh cat of a report. pscp copies to
// one remote path for every host, so the files go to a shared directory
// (the nodes are all this machine): the transport's cost is what counts.
func pssh(t *testing.T, fl *testFleet, conc int) {
	if _, err := exec.LookPath("parallel-scp"); err != nil {
		t.Log("parallel-scp not installed; no comparison")
		return
	}
	dir := t.TempDir()
	var hosts strings.Builder
	var client string
	for _, id := range fl.ids {
		s := fl.servers[id]
		fmt.Fprintf(&hosts, "%s@127.0.0.1:%d\n", s.User, s.Port)
		client = s.Client.Path
	}
	hf := filepath.Join(dir, "hosts")
	os.WriteFile(hf, []byte(hosts.String()), 0o600)
	kh := filepath.Join(filepath.Dir(fl.inv), "known_hosts")
	common := []string{"-h", hf, "-p", strconv.Itoa(conc), "-t", "60", "-O", "UserKnownHostsFile=" + kh, "-O", "StrictHostKeyChecking=yes", "-O", "BatchMode=yes", "-x", "-i " + client}
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o700)
	src := filepath.Join(fl.caDir, "nodes", fl.ids[0])
	files := []string{filepath.Join(src, "node.crt"), filepath.Join(src, "node.key"), filepath.Join(src, "cluster.crt")}
	t0 := time.Now()
	if out, err := exec.Command("parallel-scp", append(append(common, files...), target+"/")...).CombinedOutput(); err != nil {
		t.Fatalf("parallel-scp: %v\n%s", err, out)
	}
	scp := time.Since(t0)
	report := filepath.Join(fl.servers[fl.ids[0]].Dir, "state", fleet.ReportFileName)
	t1 := time.Now()
	if out, err := exec.Command("parallel-ssh", append(common, "-i", "cat", report)...).CombinedOutput(); err != nil {
		t.Fatalf("parallel-ssh: %v\n%s", err, out[:min(len(out), 2000)])
	}
	ssh := time.Since(t1)
	t.Logf("K=100 pssh: parallel-scp of the 3 files %s; parallel-ssh cat report.json %s", scp.Round(time.Millisecond), ssh.Round(time.Millisecond))
}

// syntheticFleet is n nodes' CA records and reports, as fleet status
// would hold them, without any network: node i has a current
// certificate, and every tenth is stale.
func syntheticFleet(n int) (fleet.CA, []fleet.Fetched) {
	now := time.Now()
	ca := fleet.CA{Nodes: make(map[string]authority.NodeRecord, n)}
	fetched := make([]fleet.Fetched, n)
	for i := range n {
		id := fmt.Sprintf("node-%05d", i)
		old, cur := fmt.Sprintf("%X", 1<<40+2*i), fmt.Sprintf("%X", 1<<40+2*i+1)
		ca.Nodes[id] = authority.NodeRecord{ID: id, Current: cur}
		exp := now.Add(time.Duration(i%90) * 24 * time.Hour)
		ca.Certs = append(ca.Certs,
			authority.CertRecord{ID: id, Serial: old, IssuedAt: now.Add(-60 * 24 * time.Hour), NotAfter: exp.Add(-30 * 24 * time.Hour)},
			authority.CertRecord{ID: id, Serial: cur, IssuedAt: now.Add(-48 * time.Hour), NotAfter: exp})
		inst := cur
		if i%10 == 0 {
			inst = old
		}
		r := fleet.Report{NodeID: id, AgentVersion: "0.1.0", Written: now, Bundles: []fleet.BundleReport{{
			Name: "web", NodeID: id, Serial: inst, ServedSerial: inst, NotAfter: exp, Health: "OK", LastCheck: "ok", LastCheckAt: now, LastChange: now,
		}}}
		fetched[i] = fleet.Fetched{ID: id, Address: "10.0.0.1", Data: r.Marshal()}
	}
	return ca, fetched
}

// BenchmarkJoin10000: fleet status's work on the admin host for 10,000
// nodes once their reports are read: parse, join, summarize, metrics.
func BenchmarkJoin10000(b *testing.B) {
	ca, fetched := syntheticFleet(10000)
	b.ReportAllocs()
	for b.Loop() {
		st := fleet.Join(fetched, ca, fleet.JoinOptions{Now: time.Now()})
		sum := fleet.Summarize(st, time.Now())
		var sb strings.Builder
		fleet.WriteMetrics(&sb, st, sum, time.Now())
	}
}

// TestSimulate10000 runs fleet status in-process over 10,000 synthetic
// nodes (reports served by a function, no network) and reports its time
// and the admin host's heap. Not part of normal runs:
// CERTKEEPER_FLEET_SIM=1 go test -run Simulate10000 -v ./fleet/
func TestSimulate10000(t *testing.T) {
	if os.Getenv("CERTKEEPER_FLEET_SIM") == "" {
		t.Skip("set CERTKEEPER_FLEET_SIM=1 to run")
	}
	const n = 10000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ca, fetched := syntheticFleet(n)
	data := map[string][]byte{}
	var nodes []distribute.Node
	for _, f := range fetched {
		data[f.ID] = f.Data
		nodes = append(nodes, distribute.Node{ID: f.ID, SSH: distribute.Target{Address: f.Address}})
	}
	start := time.Now()
	got := fleet.Collect(context.Background(), nodes, fleet.CollectOptions{Fetch: func(_ context.Context, n distribute.Node) ([]byte, error) {
		return data[n.ID], nil
	}})
	st := fleet.Join(got, ca, fleet.JoinOptions{Now: time.Now()})
	sum := fleet.Summarize(st, time.Now())
	var sb strings.Builder
	fleet.WriteMetrics(&sb, st, sum, time.Now())
	took := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if sum.Nodes != n || sum.States[fleet.StateStale] != n/10 {
		t.Fatalf("%+v", sum.States)
	}
	t.Logf("10,000 nodes in-process: collect+join+summary+metrics %s; heap in use %.1f MiB (inputs included), allocated during the run %.1f MiB; textfile %d KiB",
		took.Round(time.Millisecond), float64(after.HeapInuse)/(1<<20), float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), sb.Len()/1024)
}
