package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/rotate"
)

// Every fetch tries the admin hosts in config order: the primary first,
// even after a standby answered, so the standby signs only while the
// primary is down.
func TestFailoverOrder(t *testing.T) {
	for n, want := range map[int]string{0: "[]", 1: "[0]", 2: "[0 1]", 3: "[0 1 2]"} {
		if got := fmt.Sprint(agent.FailoverOrder(n)); got != want {
			t.Errorf("FailoverOrder(%d) = %s, want %s", n, got, want)
		}
	}
}

// What the log says of a fetch, by which source answered it and which
// answered the one before.
func TestFailoverNews(t *testing.T) {
	const none, over, back = agent.NoFailoverNews, agent.FailedOver, agent.FailedBack
	for _, c := range []struct {
		n, prev, i int
		want       agent.FailoverEvent
	}{
		{1, 0, 0, none}, // one source: nothing to say
		{2, 0, 0, none}, // the primary, as before
		{2, 0, 1, over}, // the primary failed, the standby answered
		{2, 1, 1, over}, // still down: said at every fetch
		{3, 1, 2, over}, // the first two failed
		{2, 1, 0, back}, // the primary is back
		{3, 2, 0, back}, // from the third straight back to the first
	} {
		if got := agent.FailoverNews(c.n, c.prev, c.i); got != c.want {
			t.Errorf("FailoverNews(%d, %d, %d) = %d, want %d", c.n, c.prev, c.i, got, c.want)
		}
	}
}

type failingSource struct{ err error }

func (s failingSource) Fetch(context.Context, *agent.Bundle) ([]rotate.Input, error) {
	return nil, s.err
}

// With one admin host there is no "every admin host" to speak of: its own
// error is the error, as it was before failover (and the standby's wording
// "(1 sources)" is not English).
func TestOneSourceFailsWithItsOwnError(t *testing.T) {
	cause := errors.New(`bundle "main": pull: 127.0.0.1:22: connect: connection refused`)
	_, err := (&agent.Failover{Sources: []agent.Source{failingSource{cause}}}).Fetch(context.Background(), &agent.Bundle{Name: "main"})
	if !errors.Is(err, cause) || err.Error() != cause.Error() {
		t.Errorf("one source: %v; want %v", err, cause)
	}
	_, err = (&agent.Failover{Sources: []agent.Source{failingSource{cause}, failingSource{cause}}}).Fetch(context.Background(), &agent.Bundle{Name: "main"})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "every admin host failed (2 sources)") {
		t.Errorf("two sources: %v", err)
	}
}
