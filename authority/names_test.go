package authority

import (
	"crypto/rand"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// authority adds one rule to pki's node id rule (tested there): control-
// names a control service's certificate.
func TestValidateID(t *testing.T) {
	if err := ValidateID("node-1", KindNode); err != nil {
		t.Error(err)
	}
	if err := ValidateID("n@x", KindNode); err == nil || !strings.Contains(err.Error(), "'@' is not allowed") {
		t.Errorf("n@x: %v; want pki's rule", err)
	}
	if err := ValidateID("control-x", KindNode); err == nil || !strings.Contains(err.Error(), "kept for control-service") {
		t.Errorf("control-x as a node: %v", err)
	}
	if err := ValidateID("control-x", KindControl); err != nil {
		t.Error(err)
	}
}

func TestControlRequest(t *testing.T) {
	r, err := ControlRequest("Control.Example.com", Names{DNS: []string{"api.example.com"}}, "")
	if err != nil || r.ID != "control-Control.Example.com" || r.Kind != KindControl || r.Names.String() != "DNS:control.example.com, DNS:api.example.com" {
		t.Fatalf("%+v %v", r, err)
	}
	if r, err := ControlRequest("10.0.0.1", Names{}, ""); err != nil || r.Names.String() != "IP:10.0.0.1" {
		t.Fatalf("address host: %+v %v", r, err)
	}
	if _, err := ControlRequest("fd00::1", Names{}, ""); err == nil {
		t.Fatal("an IPv6 host can not name a directory")
	}
	if _, err := ControlRequest("bad_host", Names{}, ""); err == nil {
		t.Fatal("bad host accepted")
	}
}

func TestParseNodeList(t *testing.T) {
	list := "# id  names\n\n8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a  node1.example.com 10.0.0.5  # the first\r\nnode-2\tnode2.example.com,10.0.0.6,,\n   node-3\n"
	got, err := ParseNodeList([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Line != 3 || got[0].Names.String() != "DNS:node1.example.com, IP:10.0.0.5" ||
		got[1].ID != "node-2" || got[1].Names.String() != "DNS:node2.example.com, IP:10.0.0.6" || got[2].ID != "node-3" || !got[2].Names.Empty() {
		t.Fatalf("%+v", got)
	}
	for in, want := range map[string]string{
		"":                         "no node ids",
		"# only a comment\n":       "no node ids",
		"a\nb\na\n":                `line 3: id "a" is already on line 1`,
		"a 10.0.0.300\n":           "is neither",
		"good\n.bad\n":             "line 2: id \".bad\"",
		"n bad_name\n":             "line 1: DNS name \"bad_name\"",
		strings.Repeat("x", 70000): "line 1:",
	} {
		if _, err := ParseNodeList([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.30q: %v, want %q", in, err, want)
		}
	}
	var many strings.Builder
	for range 50 {
		many.WriteString(".bad\n")
	}
	if _, err := ParseNodeList([]byte(many.String())); err == nil || !strings.Contains(err.Error(), "stopped after 20 problems") {
		t.Errorf("many problems: %v", err)
	}
}

func TestSerials(t *testing.T) {
	n, _ := pki.NewSerial(rand.Reader)
	s := FormatSerial(n)
	for _, in := range []string{s, strings.ToLower(s), strings.ReplaceAll(s, ":", ""), "0x" + strings.ReplaceAll(s, ":", ""), "serial=" + strings.ReplaceAll(s, ":", "")} {
		got, err := ParseSerial(in)
		if err != nil || got.Cmp(n) != 0 {
			t.Errorf("ParseSerial(%q) = %v, %v", in, got, err)
		}
	}
	if FormatSerial(big.NewInt(0xabc)) != "0A:BC" {
		t.Errorf("FormatSerial(0xabc) = %s", FormatSerial(big.NewInt(0xabc)))
	}
	for _, bad := range []string{"", "xyz", "0", strings.Repeat("f", 65), "node-1"} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}

func TestNewNodeID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, _ := NewNodeID(nil)
	b, _ := NewNodeID(nil)
	if !re.MatchString(a) || a == b || ValidateID(a, KindNode) != nil {
		t.Fatalf("%s %s", a, b)
	}
}

// node_lifetime replaces node_days, for certificates shorter than a day.
func TestSettingsNodeLifetime(t *testing.T) {
	s := DefaultSettings("c")
	if s.NodeLifetime() != 90*day {
		t.Fatalf("default lifetime %s", s.NodeLifetime())
	}
	s.NodeLifetimeText = "30s"
	back, err := ParseSettings("ca.toml", s.Encode())
	if err != nil || back != s || back.NodeLifetime() != 30*time.Second {
		t.Fatalf("round trip: %+v %v\n%s", back, err, s.Encode())
	}
}

func TestSettings(t *testing.T) {
	s := DefaultSettings(`my "cluster"`)
	s.PassphraseFile = "/etc/pass"
	back, err := ParseSettings("ca.toml", s.Encode())
	if err != nil || back != s {
		t.Fatalf("round trip: %+v %v\n%s", back, err, s.Encode())
	}
	for in, want := range map[string]string{
		"name = \"x\"\nnode_key_type = \"ecdsa-p256\"\nnode_days = 90\nrenew_key = \"rotate\"\ncrl_days = 30\nrenew_keys = \"keep\"\n": "unknown key renew_keys",
		"name = \"x\"\nnode_key_type = \"dsa\"\nnode_days = 90\nrenew_key = \"rotate\"\ncrl_days = 30\n":                               "node_key_type",
		"name = \"x\"\nnode_key_type = \"ed25519\"\nnode_days = 0\nrenew_key = \"rotate\"\ncrl_days = 30\n":                            "node_days",
		"name = \"x\"\nnode_key_type = \"ed25519\"\nnode_days = 9\nrenew_key = \"sometimes\"\ncrl_days = 30\n":                         "renew_key",
		"node_key_type = \"ed25519\"\nnode_days = 9\nrenew_key = \"keep\"\ncrl_days = 30\n":                                            "name: missing",
		"name = \"x\"\nnode_days = \"90\"\n": "ca.toml",
		"name = \"x\"\nnode_key_type = \"ed25519\"\nnode_days = 9\nnode_lifetime = \"5s\"\nrenew_key = \"keep\"\ncrl_days = 30\n":   "node_lifetime: 5s is outside 10s",
		"name = \"x\"\nnode_key_type = \"ed25519\"\nnode_days = 9\nnode_lifetime = \"soon\"\nrenew_key = \"keep\"\ncrl_days = 30\n": "node_lifetime",
	} {
		if _, err := ParseSettings("ca.toml", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// FuzzParseNodeList feeds arbitrary --from-file lists: never a panic, and
// every accepted id and name is one the CA may use.
func FuzzParseNodeList(f *testing.F) {
	f.Add([]byte("# ids\nnode-1 n1.example.com 10.0.0.5\nnode-2,fd00::2\n"))
	f.Add([]byte("8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a\r\n"))
	f.Add([]byte("a\na\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseNodeList(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if ValidateID(e.ID, KindNode) != nil || seen[e.ID] {
				t.Fatalf("accepted id %q", e.ID)
			}
			seen[e.ID] = true
			// A name of digits is taken provisionally; issuing refuses it
			// unless it is the node's own id (reign's "1").
			if e.Names.ForNode(e.ID) != nil {
				continue
			}
			for _, d := range e.Names.DNS {
				if n, err := pki.NormalizeDNSNameFor(d, e.ID); err != nil || n != d {
					t.Fatalf("accepted DNS name %q", d)
				}
			}
		}
	})
}

// FuzzParseSerial: what `ca revoke` takes from the command line.
func FuzzParseSerial(f *testing.F) {
	f.Add("5F:0B:3C")
	f.Add("0x5f0b3c")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSerial(s)
		if err != nil {
			return
		}
		back, err := ParseSerial(FormatSerial(n))
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("%q -> %s -> %v %v", s, FormatSerial(n), back, err)
		}
	})
}
