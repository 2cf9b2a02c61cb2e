package fleet_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// testFleet is a real CA and one real sshd per node, each node with a
// state directory the report is read from and an inbox pushes go to.
type testFleet struct {
	caDir   string
	ca      *authority.Authority
	servers map[string]*testsshd.Server
	ids     []string
	inv     string
}

func newFleet(t *testing.T, n int) *testFleet {
	t.Helper()
	f := &testFleet{caDir: filepath.Join(t.TempDir(), "ca"), servers: map[string]*testsshd.Server{}}
	a, err := authority.Init(f.caDir, authority.InitParams{Settings: authority.DefaultSettings("cluster"), KeyType: pki.ECDSAP256}, authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.ca = a
	client := testsshd.NewKey(t, t.TempDir(), "id_ed25519", "ed25519")
	var known bytes.Buffer
	var inv strings.Builder
	var reqs []authority.Request
	for i := range n {
		id := fmt.Sprintf("node-%02d", i)
		s := testsshd.Start(t, testsshd.Options{Client: client})
		for _, d := range []string{"state", "inbox"} {
			if err := os.Mkdir(filepath.Join(s.Dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		f.servers[id], f.ids = s, append(f.ids, id)
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s\n", s.Port, s.HostKeys[0].AuthorizedLine())
		fmt.Fprintf(&inv, "\n[[node]]\nid = %q\naddress = %q\ntarget = %q\nreport = %q\n", id, s.Addr, filepath.Join(s.Dir, "inbox"), filepath.Join(s.Dir, "state", fleet.ReportFileName))
		r, err := authority.NodeRequest(id, authority.Names{}, "")
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	f.issue(t, reqs...)
	head := fmt.Sprintf("[defaults]\nuser = %q\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"20s\"\n", f.servers[f.ids[0]].User, client.Path, "known_hosts")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), known.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f.inv = filepath.Join(dir, "nodes.toml")
	if err := os.WriteFile(f.inv, []byte(head+inv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *testFleet) issue(t *testing.T, reqs ...authority.Request) {
	t.Helper()
	res, err := f.ca.Issue(context.Background(), reqs, authority.IssueOptions{Force: true})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("issue: %v %+v", err, res.Failed)
	}
}

func (f *testFleet) nodes(t *testing.T) []distribute.Node {
	t.Helper()
	inv, err := distribute.LoadInventory(f.inv)
	if err != nil {
		t.Fatal(err)
	}
	return inv.Nodes
}

// published is the certificate the CA published for a node.
func (f *testFleet) published(t *testing.T, id string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.caDir, "nodes", id, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return parseCert(t, data)
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeReport writes the node's report as the agent writes it: its
// state, through agent.BuildReport and Report.Marshal. served is what the
// agent's served check saw ("" for a bundle without an endpoint).
func (f *testFleet) writeReport(t *testing.T, id string, c *x509.Certificate, served string, check string) {
	t.Helper()
	now := time.Now()
	cfg := &agent.Config{NodeID: id, Bundles: []agent.Bundle{{Name: "web", NodeID: id}}}
	bs := agent.BundleState{Name: "web", Serial: pki.Serial(c), NotAfter: c.NotAfter,
		LastInstall: &agent.Event{Time: now, Result: agent.ResultInstalled},
		LastCheck:   &agent.Event{Time: now, Result: check}}
	if check == agent.ResultFailed {
		bs.LastCheck.Detail = "exit status 1"
	}
	if served != "" {
		bs.Served = &agent.ServedState{Endpoint: "127.0.0.1:443", Serial: served, LiveSerial: bs.Serial, Checked: now, Match: served == bs.Serial}
	}
	rep := agent.BuildReport(cfg, "test", 1, []agent.BundleState{bs}, now, time.Time{})
	p := filepath.Join(f.servers[id].Dir, "state", fleet.ReportFileName)
	if err := os.WriteFile(p+".tmp", rep.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
}
