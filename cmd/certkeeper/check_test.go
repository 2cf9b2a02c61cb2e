package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// writeRejected writes an agent state file, as a cleanly stopped agent
// leaves it, whose bundle b saw an inbox set rejected at `at`, moved to dir.
func writeRejected(t *testing.T, n *node, at time.Time, dir string) {
	t.Helper()
	ev := &agent.Event{Time: at, Result: agent.ResultRejected, Detail: "no key (files in " + dir + ")", Dir: dir}
	st := agent.RuntimeState{PID: 1, Started: at.Add(-time.Hour), Stopped: at.Add(time.Minute), Config: n.config,
		Bundles: []agent.BundleState{{Name: "b", LastInstall: ev, LastError: ev}}}
	b, _ := json.Marshal(st)
	os.MkdirAll(filepath.Join(n.root, "state"), 0o700)
	if err := os.WriteFile(filepath.Join(n.root, "state", agent.StateFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A rejected inbox set warns until the bundle's live files change, its
// directory is removed, or the admin acknowledges it; the line is a Nagios
// plugin's, with the seconds to expiry as performance data.
func TestCheckRejectedSetWarnsUntilSettled(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "")
	install := func() {
		t.Helper()
		c := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
		if r := n.install(n.files(map[string][]byte{"n.crt": c.CertPEM(), "n.key": c.KeyPEM(t), "cluster.crt": ca.CertPEM()})...); r.code != 0 {
			t.Fatalf("install: %+v", r)
		}
	}
	install()
	check := func(args ...string) result {
		return certkeeper(t, append([]string{"check", "--config", n.config}, args...)...)
	}
	rejected := filepath.Join(n.root, "rejected-set")
	os.Mkdir(rejected, 0o700)

	// 1. Rejected after the install: WARNING, naming the set.
	time.Sleep(10 * time.Millisecond)
	writeRejected(t, n, time.Now(), rejected)
	r := check()
	if r.code != 1 || !strings.HasPrefix(r.stdout, "CERTKEEPER WARNING - bundle b: inbox set rejected") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Fatalf("after a rejection: %+v", r)
	}
	// 2. --ack settles it.
	if r := check("--ack"); r.code != 0 || !strings.HasPrefix(r.stdout, "CERTKEEPER OK - bundle b: ") {
		t.Fatalf("check --ack: %+v", r)
	}
	if r := check(); r.code != 0 {
		t.Fatalf("check after --ack: %+v", r)
	}
	// 3. A later rejection warns again; removing its directory settles it.
	time.Sleep(10 * time.Millisecond)
	writeRejected(t, n, time.Now(), rejected)
	if r := check(); r.code != 1 {
		t.Fatalf("a rejection after the ack: %+v", r)
	}
	os.RemoveAll(rejected)
	if r := check(); r.code != 0 || strings.Contains(r.stdout, rejected) {
		t.Fatalf("check after rm -rf of the rejected set: %+v", r)
	}
	// 4. A later install (or renewal, or rollback) settles it.
	os.Mkdir(rejected, 0o700)
	writeRejected(t, n, time.Now(), rejected)
	if r := check(); r.code != 1 {
		t.Fatalf("a third rejection: %+v", r)
	}
	time.Sleep(10 * time.Millisecond)
	install()
	if r := check(); r.code != 0 {
		t.Fatalf("check after a later install: %+v", r)
	}
	// And rollback to the previous generation, after another rejection.
	time.Sleep(10 * time.Millisecond)
	writeRejected(t, n, time.Now(), rejected)
	time.Sleep(10 * time.Millisecond)
	if r := certkeeper(t, "rollback", "--config", n.config); r.code != 0 {
		t.Fatalf("rollback without --bundle: %+v", r)
	}
	if r := check(); r.code != 0 {
		t.Fatalf("check after a rollback: %+v", r)
	}
	// --json says the same.
	r = check("--json")
	var j checkJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || r.code != 0 || j.Health != "OK" || len(j.Bundles) != 1 || j.Bundles[0].ExpirySeconds == nil || *j.Bundles[0].ExpirySeconds < 80*86400 {
		t.Fatalf("check --json: %v %+v", err, r)
	}
}

// The package's starter config checks OK, saying nothing is configured
// yet, not CRITICAL over the example bundle's empty directory.
func TestCheckStarterConfig(t *testing.T) {
	n := newNode(t, "custom", agent.StarterNodeID, "ca_file = \"ca.crt\"\ncert_file = \"node.crt\"\nkey_file = \"node.key\"\n")
	r := certkeeper(t, "check", "--config", n.config)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "CERTKEEPER OK - bundle b: nothing configured yet") {
		t.Fatalf("check of the starter config: %+v", r)
	}
	// The packaged file itself.
	cfg, err := os.ReadFile("../../packaging/certkeeper.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `node_id = "`+agent.StarterNodeID+`"`) {
		t.Errorf("packaging/certkeeper.toml does not use agent.StarterNodeID")
	}
}

// Health is combined as the monitoring plugins combine it (max_state_alt):
// CRITICAL, WARNING, UNKNOWN, OK. A bundle with nothing installed is
// CRITICAL even when the agent's state file is damaged (UNKNOWN), which
// used to hide it.
func TestCheckUnknownDoesNotHideCritical(t *testing.T) {
	n := newNode(t, "flocker-node", "node-1", "")
	os.MkdirAll(filepath.Join(n.root, "state"), 0o700)
	testpki.WriteFile(t, filepath.Join(n.root, "state"), "agent-state.json", []byte("{garbage"), 0o600)
	code, stdout, _ := runIn("check", "--config", n.config)
	if code != 2 || !strings.HasPrefix(stdout, "CERTKEEPER CRITICAL - bundle b: nothing installed") {
		t.Errorf("exit %d: %s", code, stdout)
	}
}
