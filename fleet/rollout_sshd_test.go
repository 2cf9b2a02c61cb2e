package fleet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/pki"
)

// nodeAgent stands in for a node's agent: when a pushed node.crt lands in
// the inbox it takes the set, "runs" the check (failing on the nodes in
// failCheck) and writes the report as the agent does (agent.BuildReport).
// It does not install files or reload a daemon: the rollout sees nodes
// only through their reports.
func (f *testFleet) nodeAgent(t *testing.T, ctx context.Context, id string, failCheck bool, wg *sync.WaitGroup) {
	defer wg.Done()
	inbox := filepath.Join(f.servers[id].Dir, "inbox")
	for ctx.Err() == nil {
		data, err := os.ReadFile(filepath.Join(inbox, "node.crt"))
		if err == nil && len(data) > 0 {
			if c, perr := parseCertErr(data); perr == nil {
				time.Sleep(100 * time.Millisecond) // the agent's debounce
				result := agent.ResultOK
				if failCheck {
					result = agent.ResultFailed
				}
				f.writeReport(t, id, c, pki.Serial(c), result)
				ents, _ := os.ReadDir(inbox)
				for _, e := range ents {
					os.Remove(filepath.Join(inbox, e.Name()))
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A canary push to 20 real sshd nodes where one canary's check fails
// stops after the canary wave: the other canaries are confirmed, the
// failing one says why, and nothing is pushed to the 17 others.
func TestCanaryRolloutStopsAtAFailedCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 sshd")
	}
	f := newFleet(t, 20)
	for _, id := range f.ids {
		f.writeReport(t, id, f.published(t, id), "", agent.ResultOK)
	}
	for _, id := range f.ids {
		f.reissue(t, id)
	}
	const failing = "node-01"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range f.ids {
		wg.Add(1)
		go f.nodeAgent(t, ctx, id, id == failing, &wg)
	}
	defer func() { cancel(); wg.Wait() }()

	var waves []int
	out, err := fleet.Rollout(context.Background(), f.nodes(t), fleet.RolloutOptions{
		Push:   distribute.PushOptions{CADir: f.caDir, Concurrency: 8},
		Canary: 3, Waves: []int{5},
		Want: func(n distribute.Node) (fleet.Want, error) {
			return fleet.Want{Serial: pki.Serial(f.published(t, n.ID))}, nil
		},
		Wait: 60 * time.Second, Poll: 200 * time.Millisecond,
		WaveDone: func(w int, _ []fleet.NodeOutcome) { waves = append(waves, w) },
	})
	if !errors.Is(err, fleet.ErrRolloutStopped) {
		t.Fatalf("rollout: %v", err)
	}
	if len(waves) != 1 || waves[0] != 0 {
		t.Fatalf("waves run: %v, want only the canary wave", waves)
	}
	for _, o := range out {
		want := fleet.OutcomeNotPushed
		switch {
		case o.ID == failing:
			want = fleet.OutcomeFailed
		case o.Wave == 0:
			// The other canaries: confirmed, or still pushed when the
			// failure stopped the wait first.
			if o.Outcome == fleet.OutcomePushed {
				want = fleet.OutcomePushed
			} else {
				want = fleet.OutcomeConfirmed
			}
		}
		if o.Outcome != want {
			t.Errorf("%s (wave %d): %s %q, want %s", o.ID, o.Wave, o.Outcome, o.Detail, want)
		}
		if o.Wave > 0 {
			if ents, _ := os.ReadDir(filepath.Join(f.servers[o.ID].Dir, "inbox")); len(ents) != 0 {
				t.Errorf("%s got %d files though its wave never ran", o.ID, len(ents))
			}
			rep, err := os.ReadFile(filepath.Join(f.servers[o.ID].Dir, "state", fleet.ReportFileName))
			if err != nil {
				t.Fatal(err)
			}
			r, _ := fleet.ParseReport(rep)
			if fleet.NormSerial(r.Bundles[0].Serial) == fleet.NormSerial(pki.Serial(f.published(t, o.ID))) {
				t.Errorf("%s has the new certificate though its wave never ran", o.ID)
			}
		}
	}
	t.Logf("failing canary: %+v", out[1])
}
