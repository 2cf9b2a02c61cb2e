package agent_test

import (
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
)

// While a copy-mode swap is journaled (a live file held open on Windows),
// the record owed to the generation it makes live is kept and waits;
// nothing runs against the torn set. With no swap under way, it is
// PlanOwed.
func TestPlanOwedSwapping(t *testing.T) {
	change := &agent.Owed{Generation: "..gen-000006", Reload: true, Check: true}
	rollback := &agent.Owed{Generation: "..gen-000005", Reload: true, RollbackFrom: "..gen-000006"}
	prior := &agent.Owed{Generation: "..gen-000005", Reload: true}
	withPrior := &agent.Owed{Generation: "..gen-000006", Reload: true, Prior: prior}
	paid := &agent.Owed{Generation: "..gen-000006"}
	for _, c := range []struct {
		name           string
		o              *agent.Owed
		live, swapping string
		step           agent.OwedStep
		want           *agent.Owed
	}{
		{"no swap: as PlanOwed, run", change, "..gen-000006", "", agent.OwedRun, change},
		{"no swap: as PlanOwed, never live", change, "..gen-000005", "", agent.OwedNothing, nil},
		{"held mid-swap: the new one's reload waits, not dropped", change, "..gen-000005", "..gen-000006", agent.OwedWait, change},
		{"held mid-swap of a rollback: waits, not rolled back again", rollback, "..gen-000006", "..gen-000005", agent.OwedWait, rollback},
		{"held mid-swap, the record has a prior: the new one's", withPrior, "..gen-000005", "..gen-000006", agent.OwedWait, withPrior},
		{"mid-swap to another generation: ..data's record waits", prior, "..gen-000005", "..gen-000006", agent.OwedWait, prior},
		{"mid-swap, nothing recorded", nil, "..gen-000005", "..gen-000006", agent.OwedNothing, nil},
		{"mid-swap, all paid", paid, "..gen-000005", "..gen-000006", agent.OwedNothing, nil},
		{"unreadable journal: still waits", change, "..gen-000006", "?", agent.OwedWait, change},
	} {
		t.Run(c.name, func(t *testing.T) {
			step, o := agent.PlanOwedSwapping(c.o, c.live, c.swapping)
			if step != c.step || o != c.want {
				t.Fatalf("PlanOwedSwapping = %v %+v, want %v %+v", step, o, c.step, c.want)
			}
			if st := o.Status(step); step == agent.OwedWait && (st == nil || !st.Waiting) {
				t.Errorf("Status(OwedWait) = %+v; want Waiting", st)
			}
		})
	}
}

// The loop's retries of a swap a held file stopped: soon at first, then
// less often, never more than twice a minute.
func TestHeldRetry(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second},
		{6, 30 * time.Second}, {7, 30 * time.Second}, {1000, 30 * time.Second},
	} {
		if got := agent.HeldRetry(c.n); got != c.want {
			t.Errorf("HeldRetry(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}
