package distribute_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/pki"
)

const designInventory = `[defaults]
user          = "root"
port          = 22
identity_file = "~/.ssh/id_ed25519"
known_hosts   = "~/.ssh/known_hosts"
target        = "/var/lib/certkeeper/inbox/flocker"
layout        = "flocker-node"

[[node]]
id      = "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a"
address = "10.0.0.5"

[[node]]
id      = "control-admin.example.com"
address = "10.0.0.2:2222"
user    = "certkeeper"
layout  = "flocker-control"
target  = "/etc/flocker"
timeout = "10s"
`

func TestParseInventoryAppliesDefaults(t *testing.T) {
	home, _ := os.UserHomeDir()
	inv, err := distribute.ParseInventory("/srv/nodes.toml", []byte(designInventory))
	if err != nil {
		t.Fatal(err)
	}
	a, b := inv.Nodes[0], inv.Nodes[1]
	want := distribute.Target{Address: "10.0.0.5", Port: 22, User: "root", IdentityFile: filepath.Join(home, ".ssh/id_ed25519"), KnownHosts: filepath.Join(home, ".ssh/known_hosts")}
	if a.SSH != want || a.Dir != "/var/lib/certkeeper/inbox/flocker" || a.Layout != "flocker-node" || a.NodeID != a.ID || a.Line != 9 {
		t.Errorf("node 0: %+v", a)
	}
	if a.Account != "ck-8eab4b8d-c0a2-4ce2-80aa-07092" {
		t.Errorf("account %q", a.Account)
	}
	if b.SSH.Port != 2222 || b.SSH.Address != "10.0.0.2" || b.SSH.User != "certkeeper" || b.SSH.Timeout != 10*time.Second || b.NodeID != "admin.example.com" || b.Dir != "/etc/flocker" {
		t.Errorf("node 1: %+v", b)
	}
	if hp, _ := b.SSH.HostPort(); hp != "10.0.0.2:2222" {
		t.Errorf("hostport %s", hp)
	}
	sel, err := inv.Select([]string{"control-admin.example.com"})
	if err != nil || len(sel) != 1 || sel[0].ID != b.ID {
		t.Errorf("select: %v %v", sel, err)
	}
	if _, err := inv.Select([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "no node nope") {
		t.Errorf("select unknown: %v", err)
	}
}

// mode says which accounts the admin host gives a node: pull (the
// default), csr, or both; [defaults] may set it for all.
func TestParseInventoryModes(t *testing.T) {
	inv, err := distribute.ParseInventory("nodes.toml", []byte(`# inventory
[defaults]
user = "root"
target = "/var/lib/certkeeper/inbox/flocker"
mode = "csr"
[[node]]
id = "a"
address = "10.0.0.1"
[[node]]
id = "b"
address = "10.0.0.2"
mode = "pull"
[[node]]
id = "c"
address = "10.0.0.3"
mode = "pull+csr"
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		mode      string
		pull, csr bool
	}{{"csr", false, true}, {"pull", true, false}, {"pull+csr", true, true}} {
		n := inv.Nodes[i]
		if n.Mode != want.mode || n.Pulls() != want.pull || n.SendsCSR() != want.csr {
			t.Errorf("node %s: mode %q pulls %v csr %v, want %+v", n.ID, n.Mode, n.Pulls(), n.SendsCSR(), want)
		}
	}
	inv, _ = distribute.ParseInventory("nodes.toml", []byte("[[node]]\nid=\"a\"\naddress=\"h\"\nuser=\"u\"\ntarget=\"/t\"\n"))
	if n := inv.Nodes[0]; n.Mode != distribute.ModePull || !n.Pulls() || n.SendsCSR() {
		t.Errorf("default mode: %+v", n)
	}
}

func TestParseInventoryRelativePaths(t *testing.T) {
	inv, err := distribute.ParseInventory("/srv/admin/nodes.toml", []byte("[[node]]\nid=\"a\"\naddress=\"h\"\nuser=\"u\"\ntarget=\"in\"\nidentity_file=\"keys/id\"\nknown_hosts=\"/etc/kh\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := inv.Nodes[0]; n.SSH.IdentityFile != "/srv/admin/keys/id" || n.SSH.KnownHosts != "/etc/kh" {
		t.Fatalf("%+v", n.SSH)
	}
}

func TestParseInventoryRefusals(t *testing.T) {
	node := "[[node]]\nid = \"a\"\naddress = \"h\"\nuser = \"u\"\ntarget = \"/in\"\n"
	for _, tc := range []struct{ name, toml, want string }{
		{"unknown top key", "foo = 1\n" + node, `nodes.toml:1: foo: unknown key`},
		{"unknown default", "[defaults]\nuser = \"u\"\nidentity = \"x\"\n" + node, `nodes.toml:3: defaults.identity: unknown key; known keys here: identity_file, known_hosts, layout, mode, port, report, target, timeout, user`},
		{"bad mode", node + "mode = \"push\"\n", `nodes.toml:6: node "a".mode: "push" is not one of "pull"`},
		{"case differs", "[defaults]\nUser = \"u\"\n" + node, `nodes.toml:2: defaults.User: unknown key`},
		{"unknown in second node", node + "\n[[node]]\nid = \"b\"\naddress = \"h\"\nadress = \"x\"\n", `nodes.toml:10: node.adress: unknown key`},
		{"nested table", node + "extra = { a = 1 }\n", `node.extra: unknown key`},
		{"bare number duration", "[defaults]\ntimeout = 30\n" + node, `timeout`},
		{"no nodes", "[defaults]\nuser = \"u\"\n", "no [[node]] tables"},
		{"missing id", "[[node]]\naddress = \"h\"\nuser=\"u\"\ntarget=\"/t\"\n", `nodes.toml:1: node[0].id: missing`},
		{"id with slash", "[[node]]\nid = \"../x\"\naddress = \"h\"\nuser=\"u\"\ntarget=\"/t\"\n", `nodes.toml:2: node "../x".id:`},
		// The CA's rule: `ca issue` and `ca sign` refuse these ids, so the
		// inventory does too, with the rule.
		{"id with @", "[[node]]\nid = \"n@x\"\naddress = \"h\"\nuser=\"u\"\ntarget=\"/t\"\nmode=\"csr\"\n",
			`nodes.toml:2: node "n@x".id: id "n@x": '@' is not allowed (letters, digits, '.', '-' and '_' only); a node id is ` + pki.NodeIDRule},
		{"id with colon", "[[node]]\nid = \"host:1\"\naddress = \"h\"\nuser=\"u\"\ntarget=\"/t\"\n", `nodes.toml:2: node "host:1".id: id "host:1": ':' is not allowed`},
		{"id longer than a CN", "[[node]]\nid = \"" + strings.Repeat("a", 65) + "\"\naddress = \"h\"\nuser=\"u\"\ntarget=\"/t\"\n", `is longer than 64 characters`},
		{"missing address", "[[node]]\nid = \"a\"\nuser=\"u\"\ntarget=\"/t\"\n", `node "a".address: missing`},
		{"missing user", "[[node]]\nid = \"a\"\naddress = \"h\"\ntarget=\"/t\"\n", `node "a".user: missing`},
		{"missing target", "[[node]]\nid = \"a\"\naddress = \"h\"\nuser=\"u\"\n", `node "a".target: missing`},
		{"target climbs", "[[node]]\nid = \"a\"\naddress = \"h\"\nuser=\"u\"\ntarget=\"/x/../etc\"\n", `contains ".."`},
		{"two ports", "[[node]]\nid = \"a\"\naddress = \"h:22\"\nport = 2222\nuser=\"u\"\ntarget=\"/t\"\n", `nodes.toml:3: node "a".address: "h:22" has port 22 but port = 2222`},
		{"bad layout", "[defaults]\nlayout = \"flocker\"\n" + node, `unknown layout "flocker"`},
		{"duplicate id", node + "\n" + node, `"a" is also the id of the node at line 1`},
		{"bad public key", node + "public_key = \"ssh-ed25519 AAAA\"\n", `public_key: not an SSH public key`},
		{"bad account", node + "account = \"Root!\"\n", `not a valid account name`},
		{"toml syntax", "[[node]\n", `nodes.toml:2:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := distribute.ParseInventory("nodes.toml", []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

// FuzzParseInventory: any input yields nodes that are usable, or an error
// naming the file; never a panic, and never more than 50 MiB of
// allocations (the worst inputs within the limits are seeds).
func FuzzParseInventory(f *testing.F) {
	tomlcap.AddWorst(f, distribute.InventoryLimits)
	f.Add([]byte(designInventory))
	f.Add([]byte("[[node]]\nid=\"a\"\naddress=\"[::1]:22\"\nuser=\"u\"\ntarget=\"t\"\npublic_key=\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n"))
	f.Add([]byte("[defaults]\ntimeout=\"1s\"\n[[node]]\nid=\"a\"\n"))
	f.Add([]byte("[defaults]\nmode=\"csr\"\n[[node]]\nid=\"a\"\naddress=\"h\"\nuser=\"u\"\ntarget=\"t\"\nmode=\"pull+csr\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var inv *distribute.Inventory
		var err error
		if alloc := tomlcap.Alloc(func() { inv, err = distribute.ParseInventory("fuzz.toml", data) }); alloc > tomlcap.MaxAlloc {
			t.Fatalf("parsing %d bytes allocated %d MiB", len(data), alloc>>20)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, n := range inv.Nodes {
			if _, err := n.SSH.HostPort(); err != nil {
				t.Fatalf("node %q accepted with a bad address: %v", n.ID, err)
			}
			if err := pki.ValidateNodeID(n.ID); err != nil {
				t.Fatalf("node id %q accepted, but the CA refuses it: %v", n.ID, err)
			}
			if n.ID == "" || n.SSH.User == "" || n.Dir == "" || strings.Contains(n.ID, "/") || n.Account == "" {
				t.Fatalf("node accepted incomplete: %+v", n)
			}
			if distribute.CheckRemoteDir(n.Dir) != nil {
				t.Fatalf("target %q accepted", n.Dir)
			}
			if !n.Pulls() && !n.SendsCSR() || n.Mode != distribute.ModePull && n.Mode != distribute.ModeCSR && n.Mode != distribute.ModePullCSR {
				t.Fatalf("node %q accepted with mode %q", n.ID, n.Mode)
			}
		}
	})
}

func TestCheckRemoteName(t *testing.T) {
	for _, ok := range []string{"node.crt", "8eab4b8d.key", ".hidden", "a b", "ünï"} {
		if err := distribute.CheckRemoteName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", `a\b`, "x\n", "a\x00b", "\x7f", strings.Repeat("a", 256), "\xff"} {
		if err := distribute.CheckRemoteName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzCheckRemoteName: a name that passes is a single path element that
// stays in its directory.
func FuzzCheckRemoteName(f *testing.F) {
	for _, s := range []string{"node.crt", "..", "../etc/passwd", "a/b", "..data", "x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if distribute.CheckRemoteName(name) != nil {
			return
		}
		joined := filepath.Join("/base", name)
		if filepath.Dir(joined) != "/base" || filepath.Base(joined) != name {
			t.Fatalf("%q escapes or changes when joined: %q", name, joined)
		}
	})
}

// A service (systemd sets no $HOME) still finds ~ through the user database.
func TestExpandHomeWithoutHOME(t *testing.T) {
	u, err := user.Current()
	if err != nil || u.HomeDir == "" {
		t.Skip("no user database entry")
	}
	t.Setenv("HOME", "")
	os.Unsetenv("HOME")
	got, err := distribute.ExpandHome("~/.ssh/id_ed25519")
	if err != nil || got != filepath.Join(u.HomeDir, ".ssh/id_ed25519") {
		t.Fatalf("ExpandHome without $HOME = %q, %v", got, err)
	}
}

func TestInventoryReportAndProbe(t *testing.T) {
	inv, err := distribute.ParseInventory("nodes.toml", []byte("[defaults]\nuser = \"u\"\ntarget = \"/in\"\nreport = \"/var/lib/ck/report.json\"\n\n[[node]]\nid = \"a\"\naddress = \"10.0.0.1\"\nprobe = \"10.0.0.1:2379\"\nprobe_name = \"etcd-a\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := inv.Nodes[0]
	if n.Report != "/var/lib/ck/report.json" || n.Probe != "10.0.0.1:2379" || n.ProbeName != "etcd-a" {
		t.Fatalf("%+v", n)
	}
	for _, bad := range []string{"report = \"rel/report.json\"", "probe = \"10.0.0.1\""} {
		if _, err := distribute.ParseInventory("nodes.toml", []byte("[defaults]\nuser = \"u\"\ntarget = \"/in\"\n\n[[node]]\nid = \"a\"\naddress = \"10.0.0.1\"\n"+bad+"\n")); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
