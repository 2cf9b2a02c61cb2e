package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// certkeeper fleet status of two healthy nodes, each a real sshd whose
// report.json (written as the agent writes it) says the CA's issued
// certificate is installed, checked and served: exit 0, both ok in the
// text, the JSON and the textfile.
func TestFleetStatusOfAHealthyFleetExitsZero(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	a, err := authority.Init(caDir, authority.InitParams{Settings: authority.DefaultSettings("cluster"), KeyType: pki.ECDSAP256}, authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := testsshd.NewKey(t, t.TempDir(), "id_ed25519", "ed25519")
	var known bytes.Buffer
	var inv strings.Builder
	ids := []string{"n1", "n2"}
	servers := map[string]*testsshd.Server{}
	for _, id := range ids {
		r, err := authority.NodeRequest(id, authority.Names{}, "")
		if err != nil {
			t.Fatal(err)
		}
		if res, err := a.Issue(context.Background(), []authority.Request{r}, authority.IssueOptions{}); err != nil || len(res.Failed) > 0 {
			t.Fatalf("issue %s: %v %+v", id, err, res.Failed)
		}
		s := testsshd.Start(t, testsshd.Options{Client: client})
		servers[id] = s
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s\n", s.Port, s.HostKeys[0].AuthorizedLine())
		report := filepath.Join(s.Dir, "state", fleet.ReportFileName)
		fmt.Fprintf(&inv, "\n[[node]]\nid = %q\naddress = %q\ntarget = %q\nreport = %q\n", id, s.Addr, filepath.Join(s.Dir, "inbox"), report)
		writeHealthyReport(t, id, filepath.Join(caDir, "nodes", id, "node.crt"), report)
	}
	writeFleetTestFile(t, filepath.Join(dir, "known_hosts"), known.Bytes())
	invPath := filepath.Join(dir, "nodes.toml")
	writeFleetTestFile(t, invPath, []byte(fmt.Sprintf("[defaults]\nuser = %q\nidentity_file = %q\nknown_hosts = %q\ntimeout = \"20s\"\n", servers[ids[0]].User, client.Path, "known_hosts")+inv.String()))
	tf := filepath.Join(dir, "fleet.prom")

	code, out, errOut := runIn("fleet", "status", "--inventory", invPath, "--ca-dir", caDir, "--textfile", tf)
	if code != exitOK || !strings.Contains(out, "2 node(s): 2 healthy, 0 not") {
		t.Fatalf("fleet status of a healthy fleet: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
	if data, err := os.ReadFile(tf); err != nil || !strings.Contains(string(data), `certkeeper_fleet_node_ok{node="n1"} 1`) || !strings.Contains(string(data), `certkeeper_fleet_node_ok{node="n2"} 1`) {
		t.Fatalf("textfile: %v\n%s", err, data)
	}
	code, out, errOut = runIn("fleet", "status", "--inventory", invPath, "--ca-dir", caDir, "--json")
	var got fleetJSON
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil {
		t.Fatalf("fleet status --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if got.Summary.Nodes != 2 || got.Summary.Healthy != 2 || got.Summary.States[fleet.StateOK] != 2 {
		t.Fatalf("summary: %+v", got.Summary)
	}
	for _, n := range got.Nodes {
		if n.Installed == "" || n.Installed != n.Issued || n.Served != n.Issued {
			t.Errorf("%s: issued %s, installed %s, served %s", n.ID, n.Issued, n.Installed, n.Served)
		}
	}
}

// writeHealthyReport writes, as the agent does (agent.BuildReport), the
// report of a node that installed the certificate at crtPath, checked it
// and serves it.
func writeHealthyReport(t *testing.T, id, crtPath, report string) {
	t.Helper()
	data, err := os.ReadFile(crtPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", crtPath)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	serial := pki.Serial(c)
	cfg := &agent.Config{NodeID: id, Bundles: []agent.Bundle{{Name: "web", NodeID: id}}}
	bs := agent.BundleState{Name: "web", Serial: serial, NotAfter: c.NotAfter,
		LastInstall: &agent.Event{Time: now, Result: agent.ResultInstalled},
		LastCheck:   &agent.Event{Time: now, Result: agent.ResultOK},
		Served:      &agent.ServedState{Endpoint: "127.0.0.1:443", Serial: serial, LiveSerial: serial, Checked: now, Match: true}}
	rep := agent.BuildReport(cfg, "test", os.Getpid(), []agent.BundleState{bs}, now, time.Time{})
	if err := os.MkdirAll(filepath.Dir(report), 0o711); err != nil {
		t.Fatal(err)
	}
	writeFleetTestFile(t, report, rep.Marshal())
}

func writeFleetTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
