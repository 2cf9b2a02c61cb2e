package authority

import (
	"slices"
	"strings"
	"testing"
)

// Every node certificate the CA issues carries the node id as a SAN
// beside the CN: peers that check SANs only (Go; reign dials with
// ServerName = id) find it. Numeric ids (reign's) are DNS names, an
// address id is an IP SAN, and a control service keeps its host name only.
func TestIssuedCertificatesCarryTheID(t *testing.T) {
	a := newCA(t, Options{}, nil)
	names, err := ParseNames([]string{"node1.example.com", "1"}, []string{"10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := NodeRequest("1", names, "")
	if err != nil {
		t.Fatalf("--dns 1 for node 1: %v", err)
	}
	ctl, err := ControlRequest("control.example.com", Names{}, "")
	if err != nil {
		t.Fatal(err)
	}
	reqs := append([]Request{r1, ctl}, nodes(t, "2", "Node-A", "10.0.0.9", "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a")...)
	res := issue(t, a, reqs, IssueOptions{})
	got := map[string]string{}
	for _, is := range res.Issued {
		c := is.Cert
		var s []string
		s = append(s, c.DNSNames...)
		for _, ip := range c.IPAddresses {
			s = append(s, ip.String())
		}
		got[is.ID] = c.Subject.CommonName + " | " + strings.Join(s, ",")
	}
	for id, want := range map[string]string{
		"1":                                    "1 | 1,node1.example.com,10.0.0.5",
		"2":                                    "2 | 2",
		"Node-A":                               "Node-A | node-a",
		"10.0.0.9":                             "10.0.0.9 | 10.0.0.9",
		"8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a": "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a | 8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a",
		"control-control.example.com":          "control-control.example.com | control.example.com",
	} {
		if got[id] != want {
			t.Errorf("%s: %q, want %q", id, got[id], want)
		}
	}
}

// An all-digit --dns name is taken only as a node's own id; for anything
// else it is still the mistyped address it looks like.
func TestNumericDNSOnlyForTheNodesOwnID(t *testing.T) {
	n, err := ParseNames([]string{"7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NodeRequest("7", n, ""); err != nil {
		t.Errorf("node 7 --dns 7: %v", err)
	}
	for _, id := range []string{"8", "node-7"} {
		if _, err := NodeRequest(id, n, ""); err == nil || !strings.Contains(err.Error(), "its last label is a number") || !strings.Contains(err.Error(), "only a node's own id may be all digits") {
			t.Errorf("node %s --dns 7: %v", id, err)
		}
	}
	if _, err := ControlRequest("ctl.example.com", n, ""); err == nil {
		t.Error("control --dns 7 accepted")
	}
	if _, err := ParseNames([]string{"a b.7"}, nil); err == nil {
		t.Error("a name with a space accepted")
	}
	// The node list takes the id's own number too.
	entries, err := ParseNodeList([]byte("3 3 node3.example.com\n"))
	if err != nil || len(entries) != 1 || !slices.Equal(entries[0].Names.DNS, []string{"3", "node3.example.com"}) {
		t.Fatalf("node list: %v %+v", err, entries)
	}
	if _, err := ParseNodeList([]byte("3 4\n")); err == nil {
		t.Error("node list: another node's number accepted")
	}
	// ca sign's forced command: --dns 7 only for node 7.
	a := newCA(t, Options{}, nil)
	if _, err := a.Sign("8", nil, SignOptions{Extra: n}); err == nil || !strings.Contains(err.Error(), "only a node's own id") {
		t.Errorf("sign node 8 --dns 7: %v", err)
	}
}
