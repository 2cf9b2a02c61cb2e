package agent_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// What a bundle's loop does next is a function of the instant, the live
// generation and the policy alone.
func TestPlanNext(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotBefore: now.Add(-1000 * time.Hour), NotAfter: now.Add(10000 * time.Hour)})
	// A 100-hour certificate, 10 hours old / 95 hours old / expired.
	fresh := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-10 * time.Hour), NotAfter: now.Add(90 * time.Hour)}).Cert
	due := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * time.Hour), NotAfter: now.Add(20 * time.Hour)}).Cert
	critical := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-95 * time.Hour), NotAfter: now.Add(5 * time.Hour)}).Cert
	expired := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-110 * time.Hour), NotAfter: now.Add(-10 * time.Hour)}).Cert
	started := now.Add(-time.Minute)
	pol := agent.LoopPolicy{Renewal: rotate.RenewalPolicy{At: 0.66}, HasSource: true, Periodic: true, PullInterval: time.Hour, FetchStarted: started}
	noSource := pol
	noSource.HasSource = false
	tooLong := pol
	tooLong.Renewal = rotate.RenewalPolicy{Before: 200 * time.Hour}
	live := func(c *x509.Certificate) agent.LiveView {
		return agent.LiveView{Generation: "..gen-000003", Parsed: true, Leaf: c, Leafish: c, Dir: "/etc/flocker"}
	}
	for _, c := range []struct {
		name         string
		v            agent.LiveView
		pol          agent.LoopPolicy
		notInstalled string
		due          bool
		critical     bool
		fetchNow     bool // the fetch plan asks from FetchStarted on
		policyErr    bool
		dueNoSource  bool
	}{
		{name: "nothing installed", v: agent.LiveView{Err: rotate.ErrNoGeneration, Dir: "/etc/flocker"}, pol: pol,
			notInstalled: "nothing installed in /etc/flocker", fetchNow: true},
		{name: "damaged", v: agent.LiveView{Generation: "..gen-000003", Err: errors.New("node.key: does not parse"), Dir: "/etc/flocker"}, pol: pol,
			notInstalled: "live bundle is damaged: node.key: does not parse", fetchNow: true},
		{name: "fresh", v: live(fresh), pol: pol},
		{name: "in its renewal window", v: live(due), pol: pol, due: true},
		{name: "due without a source", v: live(due), pol: noSource, due: true, dueNoSource: true},
		{name: "within the critical threshold", v: live(critical), pol: pol, due: true, critical: true},
		{name: "expired", v: live(expired), pol: pol, due: true, critical: true},
		{name: "renew_before beyond the lifetime", v: live(fresh), pol: tooLong, policyErr: true},
		{name: "renew_before beyond the lifetime, expired", v: live(expired), pol: tooLong, policyErr: true, due: true, critical: true, fetchNow: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := agent.PlanNext(now, c.v, c.pol)
			if n.NotInstalled != c.notInstalled || n.Renew.Due != c.due || n.Renew.Critical != c.critical ||
				n.PolicyError != c.policyErr || n.DueWithoutSource != c.dueNoSource {
				t.Fatalf("PlanNext = %+v", n)
			}
			if fetchNow := n.Fetch.Due && n.Fetch.RenewAt.Equal(started); fetchNow != c.fetchNow {
				t.Fatalf("fetch plan %+v, want asking at once: %v", n.Fetch, c.fetchNow)
			}
			if c.v.Leaf != nil && (n.Fetch.Life != 100*time.Hour || n.Fetch.Left != c.v.Leaf.NotAfter.Sub(now) || n.Serial == "") {
				t.Fatalf("fetch plan %+v, serial %q", n.Fetch, n.Serial)
			}
			if c.v.Leaf != nil && !n.Renew.Due && !c.policyErr && (n.Renew.RenewAt.IsZero() || !n.Renew.RenewAt.After(now)) {
				t.Fatalf("renew at %s", n.Renew.RenewAt)
			}
		})
	}
}
