package agent_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// fleet is a simulation of many nodes renewing against one admin host,
// driven by the agent's own scheduling functions (PlanRenewal with
// rotate.JitterFor, NextFetch, FetchState.Record, the retry delays) and
// the CA's own renewal window (authority.Window.Due): pure, no clock, no
// network.
type fleet struct {
	nodes    int
	life     time.Duration
	mode     string        // agent.ModePull or agent.ModeCSR
	interval time.Duration // pull_interval
	// The admin host's timer: ca renew --within window every period, each
	// run late by up to delay (RandomizedDelaySec). Pull mode only.
	window        authority.Window
	period, delay time.Duration
	// noJitter replaces the fingerprint jitter with 0 (the control case).
	noJitter bool
}

// fleetResult counts the calls the admin host sees, per minute.
type fleetResult struct {
	// renewal: calls made while the caller's renewal was due (its window
	// open): what the spread is about. nothingNewer: those of them that
	// found the admin host had not re-issued yet.
	renewal, nothingNewer int
	// periodic: pull mode's background, calls outside the window.
	periodic int
	// busiestRenewal and busiestAll are the most calls in one minute:
	// renewal calls only, and every call.
	busiestRenewal, busiestAll int
	reissuedAt                 time.Duration // after t0
	lastRenewed                time.Duration // after t0
	unrenewed                  int
}

func (f fleet) run(t *testing.T) fleetResult {
	t.Helper()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	backdate := pki.BackdateFor(f.life)
	nb, na := t0.Add(-backdate), t0.Add(f.life)
	rnd := rand.New(rand.NewPCG(1, 2))

	// When the admin host has the renewed bundles: the first timer run
	// whose window holds the certificates (they were all issued together).
	var reissued time.Time
	if f.mode == agent.ModePull {
		for k := 0; ; k++ {
			run := t0.Add(time.Duration(k)*f.period + time.Duration(rnd.Float64()*float64(f.delay)))
			if f.window.Due(nb, na, run) {
				reissued = run
				break
			}
		}
	}
	// Simulate from a little before anything happens: before that each
	// node only pulls periodically outside its window, which changes
	// nothing but the phase of its pulls, drawn at random below.
	var earliest time.Time
	certs := make([]*x509.Certificate, f.nodes)
	for i := range certs {
		raw := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		certs[i] = &x509.Certificate{Raw: raw[:], NotBefore: nb, NotAfter: na}
		p := agent.PlanRenewal(t0, certs[i], rotate.RenewalPolicy{}, f.jitter(certs[i]))
		if earliest.IsZero() || p.RenewAt.Before(earliest) {
			earliest = p.RenewAt
		}
	}
	start := earliest
	if !reissued.IsZero() && reissued.Before(start) {
		start = reissued
	}
	start = start.Add(-2 * f.interval)
	end := start.Add(f.life / 10) // past every window and retry, well before expiry
	minutes := int(end.Sub(start)/time.Minute) + 1
	renewalPerMin, allPerMin := make([]int, minutes), make([]int, minutes)

	var r fleetResult
	if !reissued.IsZero() {
		r.reissuedAt = reissued.Sub(t0)
	}
	for i := range f.nodes {
		leaf := certs[i]
		renewed := false
		fs := agent.FetchState{Started: start.Add(-30 * 24 * time.Hour), Jitter: rnd.Float64()}
		// A periodic pull at a random point of the interval, half a day
		// before start: by start the pulls of a fleet whose agents started
		// at unrelated times are spread evenly (the ±10% jitter smooths
		// out the phases); calls before start are not counted.
		fs.LastAttempt = start.Add(-12*f.interval - time.Duration(rnd.Float64()*float64(f.interval)))
		stop := end
		for steps := 0; steps < 100000; steps++ {
			// What the agent plans right after its last call.
			p := agent.PlanRenewal(fs.LastAttempt, leaf, rotate.RenewalPolicy{}, f.jitter(leaf))
			plan := agent.FetchPlan{RenewAt: p.RenewAt, Due: p.Due, Interval: f.interval, Periodic: f.mode == agent.ModePull,
				Left: leaf.NotAfter.Sub(fs.LastAttempt), Life: leaf.NotAfter.Sub(leaf.NotBefore)}
			now := agent.NextFetch(fs, plan)
			if now.IsZero() || !now.Before(stop) {
				break
			}
			p = agent.PlanRenewal(now, leaf, rotate.RenewalPolicy{}, f.jitter(leaf))
			if !now.Before(start) {
				m := int(now.Sub(start) / time.Minute)
				allPerMin[m]++
				if p.Due {
					r.renewal++
					renewalPerMin[m]++
				} else {
					r.periodic++
				}
			}
			// The admin host's answer: CSR mode always signs; pull mode
			// has the renewed bundle once the timer re-issued it.
			newer := !renewed && (f.mode == agent.ModeCSR || !now.Before(reissued))
			if !newer {
				if p.Due && !now.Before(start) {
					r.nothingNewer++
				}
				fs.Record(now, agent.FetchNothingNewer, p.Due, "nothing newer", rnd.Float64())
				continue
			}
			renewed = true
			if d := now.Sub(t0); d > r.lastRenewed {
				r.lastRenewed = d
			}
			// From now on this node only pulls periodically, outside its
			// next window: follow it a little longer for the background.
			if later := now.Add(2 * f.interval); later.Before(end) {
				stop = later
			}
			issued := now
			if f.mode == agent.ModePull {
				issued = reissued
			}
			raw := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("renewed"), uint64(i)))
			leaf = &x509.Certificate{Raw: raw[:], NotBefore: issued.Add(-backdate), NotAfter: issued.Add(f.life)}
			fs.Record(now, agent.FetchRenewed, p.Due, "installed", rnd.Float64())
		}
		if !renewed {
			r.unrenewed++
		}
	}
	for m := range minutes {
		r.busiestRenewal = max(r.busiestRenewal, renewalPerMin[m])
		r.busiestAll = max(r.busiestAll, allPerMin[m])
	}
	return r
}

func (f fleet) jitter(c *x509.Certificate) float64 {
	if f.noJitter {
		return 0
	}
	return rotate.JitterFor(c)
}

// 10,000 nodes whose 90-day certificates were issued in the same minute do
// not all call the admin host in the same minute: the busiest minute sees
// at most 1% of them. Counted: renewal calls, those made while a node's
// renewal is due, retries after "nothing newer" included. Not counted
// there: pull mode's periodic pulls outside the window, a steady
// background of nodes/pull_interval a minute (167 for 10,000 nodes and the
// default hour), reported beside it.
func TestFleetRenewalsSpreadOut(t *testing.T) {
	const nodes = 10000
	day := 24 * time.Hour
	shipped := fleet{nodes: nodes, life: 90 * day, mode: agent.ModePull, interval: agent.DefaultPullInterval,
		window: authority.DefaultWindow, period: time.Hour, delay: 10 * time.Minute}
	limit := nodes / 100

	// Pull mode with the shipped timer (hourly, --within 40%): the admin
	// host re-issues before any agent's window opens, so agents pick the
	// renewed bundle up on their periodic pulls, and no agent ever finds
	// "nothing newer".
	r := shipped.run(t)
	t.Logf("pull, shipped timer: re-issued at t0+%s; %d renewal calls (%d nothing newer), busiest minute %d (%.2f%%); %d periodic pulls, busiest minute of all calls %d; last node renewed at t0+%s",
		r.reissuedAt.Round(time.Minute), r.renewal, r.nothingNewer, r.busiestRenewal, 100*float64(r.busiestRenewal)/nodes, r.periodic, r.busiestAll, r.lastRenewed.Round(time.Minute))
	if r.busiestRenewal > limit || r.nothingNewer != 0 || r.unrenewed != 0 {
		t.Errorf("pull with the shipped timer: busiest minute %d renewal calls (limit %d), %d nothing newer, %d not renewed", r.busiestRenewal, limit, r.nothingNewer, r.unrenewed)
	}
	if r.busiestAll > 3*nodes/60 {
		t.Errorf("the periodic background peaks at %d calls a minute, far above nodes/pull_interval = %d", r.busiestAll, nodes/60)
	}

	// CSR mode: each node asks once, when its own window opens; the
	// fingerprint jitter spreads the windows over 5% of the lifetime.
	csr := shipped
	csr.mode = agent.ModeCSR
	r = csr.run(t)
	t.Logf("csr: %d renewal calls, busiest minute %d (%.2f%%), no periodic calls (%d)", r.renewal, r.busiestRenewal, 100*float64(r.busiestRenewal)/nodes, r.periodic)
	if r.busiestRenewal > limit || r.renewal != nodes || r.periodic != 0 || r.unrenewed != 0 {
		t.Errorf("csr: busiest minute %d (limit %d), %d calls for %d nodes, %d periodic, %d not renewed", r.busiestRenewal, limit, r.renewal, nodes, r.periodic, r.unrenewed)
	}

	// The control: without the jitter every CSR node asks in the same
	// minute.
	csr.noJitter = true
	if r = csr.run(t); r.busiestRenewal != nodes {
		t.Errorf("without jitter the busiest minute has %d calls, want all %d", r.busiestRenewal, nodes)
	}

	// The timer as it was (daily, --within 30d) re-issues after most
	// agents started looking: they find nothing newer, retry gently, and
	// all come back within the hour after the run.
	old := shipped
	old.window, old.period, old.delay = authority.Window{Duration: 30 * day}, day, time.Hour
	r = old.run(t)
	t.Logf("pull, the old daily 30-day timer: re-issued at t0+%s; %d renewal calls (%d nothing newer), busiest minute %d (%.2f%%)",
		r.reissuedAt.Round(time.Minute), r.renewal, r.nothingNewer, r.busiestRenewal, 100*float64(r.busiestRenewal)/nodes)
	if r.nothingNewer == 0 {
		t.Error("the old timer should have agents find nothing newer")
	}
}
