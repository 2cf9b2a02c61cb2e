package authority

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

var t0 = time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func TestStatusOf(t *testing.T) {
	rev := &Revocation{At: t0}
	cases := []struct {
		name    string
		c       CertRecord
		current bool
		want    Status
	}{
		{"valid and current", CertRecord{NotAfter: t0.Add(day)}, true, StatusValid},
		{"valid, superseded", CertRecord{NotAfter: t0.Add(day)}, false, StatusSuperseded},
		{"expired", CertRecord{NotAfter: t0}, true, StatusExpired},
		{"expired and superseded", CertRecord{NotAfter: t0.Add(-day)}, false, StatusExpired},
		{"revoked outranks expired", CertRecord{NotAfter: t0.Add(-day), Revoked: rev}, true, StatusRevoked},
		{"revoked", CertRecord{NotAfter: t0.Add(day), Revoked: rev}, false, StatusRevoked},
	}
	for _, c := range cases {
		if got := StatusOf(c.c, c.current, t0); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestDueForRenewal(t *testing.T) {
	cert := func(serial string, left time.Duration, src Source, revoked bool) CertRecord {
		c := CertRecord{Serial: serial, NotAfter: t0.Add(left), Source: src}
		if revoked {
			c.Revoked = &Revocation{At: t0}
		}
		return c
	}
	certs := map[string]CertRecord{}
	var nodes []NodeRecord
	add := func(id string, c CertRecord, nodeRevoked bool) {
		certs[c.Serial] = c
		n := NodeRecord{ID: id, Current: c.Serial}
		if nodeRevoked {
			n.Revoked = &Revocation{At: t0}
		}
		nodes = append(nodes, n)
	}
	add("fresh", cert("01", 60*day, SourceIssue, false), false)
	add("due-later", cert("02", 20*day, SourceIssue, false), false)
	add("due-sooner", cert("03", 2*day, SourceRenew, false), false)
	add("expired", cert("04", -day, SourceIssue, false), false)
	add("exactly-at-window", cert("05", 30*day, SourceIssue, false), false)
	add("csr", cert("06", day, SourceCSR, false), false)
	add("cert-revoked", cert("07", day, SourceIssue, true), false)
	add("node-revoked", cert("08", day, SourceIssue, true), true)
	add("csr-not-due", cert("09", 90*day, SourceCSR, false), false)
	add("unpublished", cert("0A", 80*day, SourceIssue, false), false)
	add("unpublished-csr", cert("0B", 80*day, SourceCSR, false), false)
	add("unpublished-revoked", cert("0C", 80*day, SourceIssue, false), true)
	nodes = append(nodes, NodeRecord{ID: "lost", Current: "FF"})
	// With the node's mode recorded (its Source), the mode decides, not
	// the current certificate's source.
	addMode := func(id string, c CertRecord, mode Source) {
		certs[c.Serial] = c
		nodes = append(nodes, NodeRecord{ID: id, Current: c.Serial, Source: mode})
	}
	addMode("handed-in", cert("10", day, SourceCSR, false), SourceIssue)        // a push node that got a hand-in ca sign
	addMode("csr-mode", cert("11", day, SourceCSR, false), SourceCSR)           // its agent renews by CSR
	addMode("pull-csr-first", cert("12", day, SourceIssue, false), SourceIssue) // pull+csr, still on its first certificate
	addMode("pull-csr-fresh", cert("13", 80*day, SourceIssue, false), SourceIssue)
	addMode("pull-csr-lost", cert("14", 80*day, SourceIssue, false), SourceIssue)
	csrIDs := map[string]bool{"pull-csr-first": true, "pull-csr-fresh": true, "pull-csr-lost": true}
	unpublished := map[string]bool{"unpublished": true, "unpublished-csr": true, "unpublished-revoked": true, "pull-csr-lost": true}

	due, skipped := DueForRenewal(nodes, certs, unpublished, csrIDs, t0, Window{Duration: 30 * day})
	var got []string
	for _, d := range due {
		got = append(got, d.Node.ID)
		if d.Unpublished != (d.Node.ID == "unpublished" || d.Node.ID == "pull-csr-lost") {
			t.Errorf("%s: Unpublished = %v", d.Node.ID, d.Unpublished)
		}
	}
	if want := "expired,handed-in,due-sooner,due-later,exactly-at-window,pull-csr-lost,unpublished"; strings.Join(got, ",") != want {
		t.Errorf("due %v, want %s (soonest first; a certificate that was never published whatever its expiry)", got, want)
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[s.ID] = s.Reason
	}
	for id, want := range map[string]string{"csr": "CSR mode", "csr-mode": "CSR mode", "cert-revoked": "is revoked", "lost": "not in the database",
		"pull-csr-first": "the inventory has it renew by CSR"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("skip %s: %q, want %q", id, reasons[id], want)
		}
	}
	for _, id := range []string{"node-revoked", "fresh", "csr-not-due", "unpublished-csr", "unpublished-revoked", "pull-csr-fresh"} {
		if _, ok := reasons[id]; ok {
			t.Errorf("%s reported as skipped: %s", id, reasons[id])
		}
	}
}

func TestCRLEntries(t *testing.T) {
	certs := []CertRecord{
		{Serial: "0A", NotAfter: t0.Add(day), Revoked: &Revocation{At: t0, Reason: 1}},
		{Serial: "02", NotAfter: t0.Add(day), Revoked: &Revocation{At: t0}},
		{Serial: "03", NotAfter: t0.Add(day)},                                // not revoked
		{Serial: "04", NotAfter: t0.Add(-day), Revoked: &Revocation{At: t0}}, // expired
	}
	e := CRLEntries(certs, t0)
	if len(e) != 2 || e[0].Serial.Int64() != 2 || e[1].Serial.Int64() != 10 || e[1].Reason != 1 {
		t.Fatalf("entries %+v", e)
	}
}

func TestDecideExisting(t *testing.T) {
	node := &NodeRecord{ID: "n", Current: "AB", Source: SourceIssue}
	revoked := &NodeRecord{ID: "n", Current: "AB", Revoked: &Revocation{At: t0}}
	csr := &NodeRecord{ID: "n", Current: "AB", Source: SourceCSR}
	cases := []struct {
		name                   string
		n                      *NodeRecord
		published, force, skip bool
		want                   Existing
		why                    string
	}{
		{"new", nil, false, false, false, IssueNew, ""},
		{"exists", node, true, false, false, RefuseExisting, "--force"},
		{"exists, force", node, true, true, false, IssueAgain, "--force"},
		{"exists, skip", node, true, false, true, SkipExisting, "--skip-existing"},
		{"never published", node, false, false, false, IssueAgain, "never published"},
		{"never published, skip", node, false, false, true, IssueAgain, "never published"},
		{"revoked, skip", revoked, true, false, true, SkipExisting, "--skip-existing"},
		{"revoked", revoked, true, false, false, RefuseExisting, "was revoked"},
		{"revoked, unpublished", revoked, false, false, false, RefuseExisting, "was revoked"},
		{"revoked, force", revoked, true, true, false, IssueAgain, ""},
		{"csr node", csr, false, false, false, RefuseExisting, "renews by CSR"},
		{"csr node, skip", csr, false, false, true, SkipExisting, ""},
	}
	for _, c := range cases {
		got, why := DecideExisting(c.n, c.published, c.force, c.skip)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%s: %v %q, want %v %q", c.name, got, why, c.want, c.why)
		}
	}
}

func TestSignPolicyAndNames(t *testing.T) {
	n := &NodeRecord{ID: "node-1", DNSNames: []string{"n1.example.com"}, IPs: []string{"10.0.0.5"}}
	extra := Names{DNS: []string{"alias.example.com"}}
	p := SignPolicy("node-1", n, extra)
	if p.CommonName != "node-1" || strings.Join(p.DNSNames, ",") != "n1.example.com,alias.example.com,node-1" || len(p.IPs) != 1 {
		t.Fatalf("policy %+v", p)
	}
	// An id that is an address may be asked for as one.
	if p := SignPolicy("10.1.1.1", nil, Names{}); len(p.IPs) != 1 || len(p.DNSNames) != 0 {
		t.Fatalf("policy for an address id %+v", p)
	}
	// Asked names win; none asked gets the recorded ones and the extras.
	asked := pki.CSRNames{DNSNames: []string{"n1.example.com"}}
	if got := SignNames(asked, n, extra); got.String() != "DNS:n1.example.com" {
		t.Fatalf("asked: %s", got)
	}
	if got := SignNames(pki.CSRNames{}, n, extra); got.String() != "DNS:n1.example.com, DNS:alias.example.com, IP:10.0.0.5" {
		t.Fatalf("none asked: %s", got)
	}
	if got := SignNames(pki.CSRNames{}, nil, Names{}); !got.Empty() {
		t.Fatalf("unknown node, none asked: %s", got)
	}
}

func TestEntriesSortAndFilter(t *testing.T) {
	nodes := map[string]NodeRecord{"a": {ID: "a", Current: "02"}, "b": {ID: "b", Current: "03", Revoked: &Revocation{At: t0}}}
	certs := []CertRecord{
		{Serial: "01", ID: "a", NotAfter: t0.Add(3 * day)},
		{Serial: "02", ID: "a", NotAfter: t0.Add(90 * day)},
		{Serial: "03", ID: "b", NotAfter: t0.Add(10 * day), Revoked: &Revocation{At: t0, Reason: 1}},
	}
	cur := Entries(certs, nodes, false, t0)
	if len(cur) != 2 || cur[0].ID != "b" || cur[0].Status != StatusRevoked || !cur[0].NodeRevoked || cur[0].RevokedReason != "keyCompromise" || cur[1].SecondsLeft != int64(90*day/time.Second) {
		t.Fatalf("current %+v", cur)
	}
	all := Entries(certs, nodes, true, t0)
	if len(all) != 3 || all[0].Serial != "01" || all[0].Status != StatusSuperseded {
		t.Fatalf("all %+v", all)
	}
}

func TestNamesHelpers(t *testing.T) {
	n, err := ParseNames([]string{"A.example", "a.example"}, []string{"10.0.0.1", "::ffff:10.0.0.1"})
	if err != nil || n.String() != "DNS:a.example, IP:10.0.0.1" {
		t.Fatalf("%s %v", n, err)
	}
	if _, err := ParseNames([]string{"10.0.0.1"}, nil); err == nil || !strings.Contains(err.Error(), "--dns") {
		t.Fatalf("an address as --dns: %v", err)
	}
	if _, err := ParseNames(nil, []string{"10.0.0.300"}); err == nil || !strings.Contains(err.Error(), "--ip") {
		t.Fatalf("bad --ip: %v", err)
	}
	nm, err := ParseName("fd00::5")
	if err != nil || len(nm.IPs) != 1 || !nm.IPs[0].Equal(net.ParseIP("fd00::5")) {
		t.Fatalf("ParseName: %v %v", nm, err)
	}
}

func TestCRLDue(t *testing.T) {
	cases := []struct {
		name   string
		this   time.Time
		next   time.Time
		within Window
		want   bool
	}{
		{"fresh 30-day CRL, 30-day window", t0, t0.Add(30 * day), Window{Duration: 30 * day}, false},
		{"past half its life", t0.Add(-16 * day), t0.Add(14 * day), Window{Duration: 30 * day}, true},
		{"short window, not yet", t0.Add(-20 * day), t0.Add(10 * day), Window{Duration: 7 * day}, false},
		{"short window, inside", t0.Add(-25 * day), t0.Add(5 * day), Window{Duration: 7 * day}, true},
		{"expired", t0.Add(-31 * day), t0.Add(-day), Window{Duration: 7 * day}, true},
		{"damaged (zero times)", time.Time{}, time.Time{}, Window{Duration: 7 * day}, true},
		{"40% of a 30-day CRL: 12 days, not yet", t0.Add(-17 * day), t0.Add(13 * day), Window{Fraction: 0.4}, false},
		{"40% of a 30-day CRL: 12 days, inside", t0.Add(-19 * day), t0.Add(11 * day), Window{Fraction: 0.4}, true},
	}
	for _, c := range cases {
		if got := CRLDue(c.this, c.next, t0, c.within); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// --within 40% re-issues by each certificate's own lifetime.
func TestDueForRenewalByFraction(t *testing.T) {
	mk := func(serial string, life, left time.Duration) CertRecord {
		return CertRecord{Serial: serial, NotBefore: t0.Add(left - life), NotAfter: t0.Add(left), Source: SourceIssue}
	}
	certs := map[string]CertRecord{}
	var nodes []NodeRecord
	for id, c := range map[string]CertRecord{
		"90d-37left": mk("01", 90*day, 37*day), "90d-35left": mk("02", 90*day, 35*day),
		"7d-3left": mk("03", 7*day, 3*day), "7d-2left": mk("04", 7*day, 2*day),
	} {
		certs[c.Serial] = c
		nodes = append(nodes, NodeRecord{ID: id, Current: c.Serial})
	}
	due, _ := DueForRenewal(nodes, certs, nil, nil, t0, Window{Fraction: 0.4})
	var got []string
	for _, d := range due {
		got = append(got, d.Node.ID)
	}
	if want := "7d-2left,90d-35left"; strings.Join(got, ",") != want {
		t.Errorf("due %v, want %s", got, want)
	}
}
