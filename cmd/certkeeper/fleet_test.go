package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testsshd"
	"github.com/certkeeper/certkeeper/pki"
)

// fleet status with nodes that do not answer: exit 1, each unreachable
// in the JSON, and the textfile written; usage errors exit 2.
func TestFleetStatusCommand(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	a, err := authority.Init(caDir, authority.InitParams{Settings: authority.DefaultSettings("cluster"), KeyType: pki.ECDSAP256}, authority.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var inv strings.Builder
	fmt.Fprintf(&inv, "[defaults]\nuser = \"root\"\nknown_hosts = \"kh\"\ntarget = \"/tmp/inbox\"\ntimeout = \"5s\"\n")
	for _, id := range []string{"n1", "n2"} {
		r, _ := authority.NodeRequest(id, authority.Names{}, "")
		if _, err := a.Issue(context.Background(), []authority.Request{r}, authority.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&inv, "\n[[node]]\nid = %q\naddress = \"127.0.0.1:%d\"\n", id, testsshd.FreePort(t))
	}
	os.WriteFile(filepath.Join(dir, "kh"), nil, 0o600)
	invPath := filepath.Join(dir, "nodes.toml")
	os.WriteFile(invPath, []byte(inv.String()), 0o600)
	tf := filepath.Join(dir, "fleet.prom")

	code, out, errOut := runIn("fleet", "status", "--inventory", invPath, "--ca-dir", caDir, "--json", "--textfile", tf)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	var got fleetJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Summary.Nodes != 2 || got.Summary.States[fleet.StateUnreachable] != 2 {
		t.Fatalf("%+v", got.Summary)
	}
	if data, err := os.ReadFile(tf); err != nil || !strings.Contains(string(data), `certkeeper_fleet_node_ok{node="n1"} 0`) {
		t.Fatalf("textfile: %v\n%s", err, data)
	}
	code, out, _ = runIn("fleet", "status", "--inventory", invPath, "--ca-dir", caDir)
	if code != exitFailure || !strings.Contains(out, "2 node(s): 0 healthy, 2 not, 2 unreachable") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A probe certificate that does not load is an error naming it, before
	// any node is read.
	code, _, errOut = runIn("fleet", "status", "--inventory", invPath, "--ca-dir", caDir, "--probe", "--probe-cert", tf, "--probe-key", tf)
	if code != exitFailure || !strings.Contains(errOut, tf) {
		t.Errorf("--probe-cert of a textfile: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{
		{"fleet"},
		{"fleet", "status"},
		{"fleet", "status", "--inventory", invPath, "--no-report"},
		{"fleet", "status", "--inventory", invPath, "--probe-cert", tf, "--probe-key", tf},
		{"fleet", "status", "--inventory", invPath, "--probe", "--probe-cert", tf},
		{"fleet", "status", "--inventory", invPath, "--report-stale-after", "-1m"},
		{"push", "--inventory", invPath, "--ca-dir", caDir, "--canary", "1", "--install"},
		{"push", "--inventory", invPath, "--ca-dir", caDir, "--wave", "0"},
	} {
		if code, _, errOut := runIn(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
	}
}
