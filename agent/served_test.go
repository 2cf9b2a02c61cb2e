package agent_test

import (
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
)

func TestDecideServed(t *testing.T) {
	for _, c := range []struct {
		match       bool
		reloads     int
		policy      string
		canRollback bool
		want        agent.ServedStep
	}{
		{true, 0, agent.ServedReport, true, agent.ServedDone},
		{true, 2, agent.ServedRollback, true, agent.ServedDone},
		{false, 0, agent.ServedReport, true, agent.ServedReloadAgain},
		{false, 1, agent.ServedRollback, true, agent.ServedReloadAgain},
		{false, 2, agent.ServedReport, true, agent.ServedGiveUp},
		{false, 2, agent.ServedRollback, true, agent.ServedRollBack},
		{false, 2, agent.ServedRollback, false, agent.ServedGiveUp},
		{false, 5, agent.ServedRollback, true, agent.ServedRollBack},
	} {
		if got := agent.DecideServed(c.match, c.reloads, c.policy, c.canRollback); got != c.want {
			t.Errorf("DecideServed(%v, %d, %q, %v) = %s, want %s", c.match, c.reloads, c.policy, c.canRollback, got, c.want)
		}
	}
}

func TestServedWaitDoubles(t *testing.T) {
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if got := agent.ServedWaitFor(time.Second, i); got != want {
			t.Errorf("ServedWaitFor(1s, %d) = %s, want %s", i, got, want)
		}
	}
}
