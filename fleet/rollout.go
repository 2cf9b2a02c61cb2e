package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/rotate"
)

// PlanWaves splits n nodes into waves: the first canary nodes, then waves
// of the given sizes, the last size repeated until every node has one
// (no sizes: the rest in one wave). It returns index ranges [start, end).
func PlanWaves(n, canary int, sizes []int) [][2]int {
	var out [][2]int
	at := 0
	take := func(k int) {
		if k <= 0 || at >= n {
			return
		}
		end := min(at+k, n)
		out = append(out, [2]int{at, end})
		at = end
	}
	take(canary)
	for i := 0; at < n; i++ {
		if len(sizes) == 0 {
			take(n - at)
			break
		}
		k := sizes[min(i, len(sizes)-1)]
		if k <= 0 {
			k = n - at
		}
		take(k)
	}
	return out
}

// Want is what a node's report must show before a rollout goes on: the
// bundle's serial installed, its check run after the push (unless the
// bundle has none), served (when the report has a served serial), healthy.
type Want struct {
	Serial string
	Since  time.Time
	Bundle string
}

// Verdict judges one report against what a rollout wants: done (go on),
// failed (stop: why), or neither (wait).
func Verdict(r *Report, w Want) (done bool, failed string) {
	b := r.bundleFor(w)
	if b == nil {
		return false, ""
	}
	checkFresh := !b.LastCheckAt.Before(w.Since)
	if checkFresh && b.LastCheck == "failed" {
		why := fmt.Sprintf("its check failed at %s", rotate.Stamp(b.LastCheckAt))
		if b.HealthText != "" {
			// The agent's own text says when, and what followed.
			why = "the agent says: " + b.HealthText
		}
		if b.Serial != "" && NormSerial(b.Serial) != NormSerial(w.Serial) {
			// A check (or the served check) failed after the push and
			// the pushed serial is no longer live: the agent rolled back.
			why = fmt.Sprintf("rolled back to serial %s; %s", b.Serial, why)
		}
		return false, why
	}
	if NormSerial(b.Serial) != NormSerial(w.Serial) {
		if !b.LastErrorAt.Before(w.Since) && b.LastError != "" {
			return false, "the agent did not install it: " + b.LastError
		}
		return false, ""
	}
	// What says the agent dealt with this push: a check run after it
	// and passed; for a bundle without a check, an install after it (the
	// serial alone may be the one the node had before); either way, a
	// delivery after it that found the files already live (a CRL the
	// bundle does not keep, the same files again), which owes nothing.
	changed := !b.LastChange.Before(w.Since)
	seen := false
	switch {
	case !changed && !b.LastDelivery.IsZero() && !b.LastDelivery.Before(w.Since):
		seen = true
	case b.NoCheck:
		seen = changed
	default:
		seen = checkFresh && b.LastCheck == "ok"
	}
	if b.Owed != "" || !seen {
		return false, ""
	}
	if b.ServedSerial != "" && NormSerial(b.ServedSerial) != NormSerial(w.Serial) {
		return false, ""
	}
	if b.Health != "OK" {
		return false, fmt.Sprintf("installed, but %s: %s", b.Health, b.HealthText)
	}
	return true, ""
}

// bundleFor is the report's bundle a rollout looks at: the one named, else
// the one holding the wanted serial, else the only one.
func (r *Report) bundleFor(w Want) *BundleReport {
	for i := range r.Bundles {
		x := &r.Bundles[i]
		if w.Bundle != "" && x.Name != w.Bundle {
			continue
		}
		if w.Bundle != "" || NormSerial(x.Serial) == NormSerial(w.Serial) || len(r.Bundles) == 1 {
			return x
		}
	}
	return nil
}

// WriteOutcomes writes a rollout's outcome table: per node its wave, its
// outcome, the serial pushed, what its last report showed installed and
// served ("-": not read; a node not pushed still has what it had), and why.
func WriteOutcomes(w io.Writer, out []NodeOutcome) {
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "NODE\tWAVE\tOUTCOME\tSERIAL\tINSTALLED\tSERVED\tDETAIL")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, o := range out {
		fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Wave+1, o.Outcome, dash(o.Serial), dash(o.Installed), dash(o.Served), o.Detail)
	}
	t.Flush()
}

// RolloutOptions shape a staged push.
type RolloutOptions struct {
	Push   distribute.PushOptions
	Canary int
	Waves  []int
	// Want gives what a node's report must show after its push.
	Want func(n distribute.Node) (Want, error)
	// Wait bounds how long a wave's nodes may take to show it; Poll is
	// how often their reports are read.
	Wait, Poll time.Duration
	Fetch      func(context.Context, distribute.Node) ([]byte, error)
	Now        func() time.Time
	// WaveDone is called after each wave.
	WaveDone func(wave int, nodes []NodeOutcome)
}

// Outcomes of a node in a rollout.
const (
	OutcomePushed    = "pushed"     // pushed; not (yet) confirmed by its report
	OutcomeConfirmed = "confirmed"  // pushed; its report shows it installed, checked, served
	OutcomeFailed    = "failed"     // the push or the node's report failed
	OutcomeTimeout   = "timeout"    // pushed; the report did not show it in time
	OutcomeNotPushed = "not-pushed" // the rollout stopped before its wave
)

// NodeOutcome is one node after a rollout.
type NodeOutcome struct {
	Node    distribute.Node `json:"-"`
	ID      string          `json:"id"`
	Wave    int             `json:"wave"`
	Outcome string          `json:"outcome"`
	Serial  string          `json:"serial,omitempty"`
	// Installed and Served are what the node's last report read showed
	// (its live and its daemon's serial); empty for a node whose report
	// was not read (not pushed: it still has what it had).
	Installed string `json:"installed_serial,omitempty"`
	Served    string `json:"served_serial,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// ErrRolloutStopped says a wave failed and the rest was not pushed.
var ErrRolloutStopped = errors.New("rollout stopped")

// Rollout pushes wave after wave and, after each, waits (bounded) until
// every node of the wave reports the bundle installed, checked and
// served; the first failure stops it, and the nodes of later waves are
// not pushed to. It returns every node's outcome in the order given.
func Rollout(ctx context.Context, nodes []distribute.Node, o RolloutOptions) ([]NodeOutcome, error) {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Fetch == nil {
		o.Fetch = FetchReport
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	out := make([]NodeOutcome, len(nodes))
	waves := PlanWaves(len(nodes), o.Canary, o.Waves)
	for w, r := range waves {
		for i := r[0]; i < r[1]; i++ {
			out[i] = NodeOutcome{Node: nodes[i], ID: nodes[i].ID, Wave: w, Outcome: OutcomeNotPushed}
		}
	}
	for w, r := range waves {
		part := nodes[r[0]:r[1]]
		since := o.Now().Add(-time.Second) // report times are the node's clock
		wants := make([]Want, len(part))
		for i, n := range part {
			want, err := o.Want(n)
			if err != nil {
				return out, err
			}
			want.Since = since
			wants[i] = want
			out[r[0]+i].Serial = want.Serial
		}
		failed := false
		for i, res := range distribute.Push(ctx, part, o.Push) {
			if res.Err != nil {
				out[r[0]+i].Outcome, out[r[0]+i].Detail = OutcomeFailed, "push: "+res.Err.Error()
				failed = true
			} else {
				out[r[0]+i].Outcome = OutcomePushed
			}
		}
		if !failed {
			failed = !confirm(ctx, part, wants, out[r[0]:r[1]], o)
		}
		if o.WaveDone != nil {
			o.WaveDone(w, out[r[0]:r[1]])
		}
		if failed {
			return out, fmt.Errorf("%w after wave %d of %d", ErrRolloutStopped, w+1, len(waves))
		}
	}
	return out, nil
}

// confirm polls the wave's reports until each node is confirmed or one
// fails, or the wait is over; it reports whether all were confirmed.
func confirm(ctx context.Context, part []distribute.Node, wants []Want, res []NodeOutcome, o RolloutOptions) bool {
	deadline := time.Now().Add(o.Wait)
	pending := len(part)
	last := make([]string, len(part))
	for {
		// A failure ends the wait, but this pass still reads the rest of
		// the wave, so that the outcome table shows what each pushed node
		// has.
		failed := false
		for i, n := range part {
			if res[i].Outcome != OutcomePushed {
				continue
			}
			data, err := o.Fetch(ctx, n)
			if err != nil {
				last[i] = "report: " + err.Error()
				continue
			}
			rep, err := ParseReport(data)
			if err != nil {
				last[i] = err.Error()
				continue
			}
			if b := rep.bundleFor(wants[i]); b != nil {
				res[i].Installed, res[i].Served = b.Serial, b.ServedSerial
			}
			done, why := Verdict(rep, wants[i])
			switch {
			case why != "":
				res[i].Outcome, res[i].Detail = OutcomeFailed, why
				failed = true
			case done:
				res[i].Outcome, res[i].Detail = OutcomeConfirmed, ""
				pending--
			default:
				last[i] = "waiting for the agent's report to show it installed, checked and served"
			}
		}
		if failed {
			for i := range res {
				if res[i].Outcome == OutcomePushed {
					res[i].Detail = "not confirmed when the rollout stopped: " + last[i]
				}
			}
			return false
		}
		if pending == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for i := range res {
				if res[i].Outcome == OutcomePushed {
					res[i].Outcome, res[i].Detail = OutcomeTimeout, fmt.Sprintf("not confirmed within %s: %s", o.Wait, last[i])
				}
			}
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.Poll):
		}
	}
}
