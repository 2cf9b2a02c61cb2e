//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

func TestPlanOwed(t *testing.T) {
	run := &agent.Owed{Generation: "..gen-000006", Reload: true, Check: true}
	checkOnly := &agent.Owed{Generation: "..gen-000006", Check: true}
	paid := &agent.Owed{Generation: "..gen-000006"}
	rollback := &agent.Owed{Generation: "..gen-000005", Reload: true, RollbackFrom: "..gen-000006"}
	prior := &agent.Owed{Generation: "..gen-000005", Reload: true}
	withPrior := &agent.Owed{Generation: "..gen-000006", Reload: true, Prior: prior}
	for _, c := range []struct {
		name string
		o    *agent.Owed
		live string
		step agent.OwedStep
		want *agent.Owed
	}{
		{"nothing recorded", nil, "..gen-000006", agent.OwedNothing, nil},
		{"nothing live", run, "", agent.OwedNothing, nil},
		{"killed after the swap: run it", run, "..gen-000006", agent.OwedRun, run},
		{"killed during the check: only the check", checkOnly, "..gen-000006", agent.OwedRun, checkOnly},
		{"all paid", paid, "..gen-000006", agent.OwedNothing, nil},
		{"killed before the swap: the old generation owes nothing", run, "..gen-000005", agent.OwedNothing, nil},
		{"rollback swapped, its reload owed", rollback, "..gen-000005", agent.OwedRun, rollback},
		{"killed before the rollback's swap: roll back again", rollback, "..gen-000006", agent.OwedRollback, rollback},
		{"rollback record, another generation live", rollback, "..gen-000007", agent.OwedNothing, nil},
		{"swap never happened, the one before still owed", withPrior, "..gen-000005", agent.OwedRun, prior},
		{"swap happened: the new one's record", withPrior, "..gen-000006", agent.OwedRun, withPrior},
	} {
		t.Run(c.name, func(t *testing.T) {
			step, o := agent.PlanOwed(c.o, c.live)
			if step != c.step || o != c.want {
				t.Fatalf("PlanOwed = %v %+v, want %v %+v", step, o, c.step, c.want)
			}
		})
	}
}

// owedFixture is a bundle whose reload counts, with its pipeline.
func owedFixture(t *testing.T, extra string) (*fixture, *agent.Bundle) {
	t.Helper()
	f := newFixture(t)
	if extra != "" {
		cfg, _ := os.ReadFile(f.config)
		cfg = bytes.Replace(cfg, []byte("\ndir = \""), []byte("\n"+extra+"\ndir = \""), 1)
		testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	}
	cfg, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	return f, &cfg.Bundles[0]
}

func (f *fixture) inputs(t *testing.T, p *testpki.Pair) []rotate.Input {
	return []rotate.Input{{Name: "c.crt", Data: p.CertPEM()}, {Name: "c.key", Data: p.KeyPEM(t)}, {Name: "ca.crt", Data: f.ca.CertPEM()}}
}

// A change whose agent died after the swap and before the reload: status
// and check say "reload owed" (WARNING), and `certkeeper install` of the
// same files runs the owed reload, once, instead of "unchanged".
func TestInstallOfTheLiveFilesRunsAnOwedReload(t *testing.T) {
	f, b := owedFixture(t, "")
	p := f.ca.Issue(t, "node-1", testpki.Options{})
	// Install without Settle is what a kill between the swap and the
	// reload leaves behind.
	out, err := agent.NewPipeline(b, quiet).Install(agent.Delivery{Kind: agent.ByHand, Inputs: f.inputs(t, p), From: "test"})
	if err != nil || !out.Result.Changed || out.Owed == nil {
		t.Fatalf("install: %+v %v", out, err)
	}
	cfg, _ := agent.LoadConfig(f.config)
	reports := agent.Reports(cfg)
	if r := reports[0]; r.Health != rotate.Warning || !strings.Contains(r.HealthText, "reload owed") || r.Owed == nil || !r.Owed.Reload {
		t.Fatalf("status of a bundle owed its reload: %v %q owed=%+v", r.Health, r.HealthText, r.Owed)
	}
	var log bytes.Buffer
	out, err = agent.Install(context.Background(), b, f.inputs(t, p), "install: again", slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil || out.Result.Changed || !out.Replayed || len(out.Reloads) != 1 {
		t.Fatalf("install again: %+v %v", out, err)
	}
	if f.reloadCount() != 1 || !strings.Contains(log.String(), "its reload is owed from an earlier change") {
		t.Fatalf("reloads %d, log:\n%s", f.reloadCount(), log.String())
	}
	// Paid: a third install is "unchanged; no reload".
	out, err = agent.Install(context.Background(), b, f.inputs(t, p), "install: third", quiet)
	if err != nil || out.Replayed || f.reloadCount() != 1 {
		t.Fatalf("third install: %+v %v, reloads %d", out, err, f.reloadCount())
	}
	if r := agent.Reports(cfg)[0]; r.Owed != nil || strings.Contains(r.HealthText, "owed") {
		t.Fatalf("still owed: %+v %q", r.Owed, r.HealthText)
	}
}

// The agent, started after such a crash, runs the owed reload once, and a
// check killed half-way is run again without a second reload.
func TestTheAgentRunsWhatIsOwedAtStart(t *testing.T) {
	f, _ := owedFixture(t, `check = ["/bin/sh", "-c", "echo check >> CHECKS"]`)
	checks := filepath.Join(f.root, "checks")
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.ReplaceAll(cfg, []byte("CHECKS"), []byte(checks)), 0o600)
	cfgd, _ := agent.LoadConfig(f.config)
	b := &cfgd.Bundles[0]
	p := f.ca.Issue(t, "node-1", testpki.Options{})
	if _, err := agent.NewPipeline(b, quiet).Install(agent.Delivery{Kind: agent.FromInbox, Inputs: f.inputs(t, p), From: "test"}); err != nil {
		t.Fatal(err)
	}
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the owed reload and check", func() bool {
		c, _ := os.ReadFile(checks)
		return f.reloadCount() == 1 && strings.Count(string(c), "check") == 1
	})
	stop()
	if o, _ := agent.ReadOwed(b); o != nil {
		t.Fatalf("still owed after the agent ran it: %+v\n%s", o, log)
	}

	// A check owed alone (the kill landed during it): the next start runs
	// the check, not the reload.
	q := f.ca.Issue(t, "node-1", testpki.Options{})
	out, err := agent.NewPipeline(b, quiet).Install(agent.Delivery{Kind: agent.FromInbox, Inputs: f.inputs(t, q), From: "test"})
	if err != nil {
		t.Fatal(err)
	}
	checkOnly := &agent.Owed{Generation: out.Result.Generation.Name, Since: time.Now(), Check: true}
	data := fmt.Sprintf(`{"generation": %q, "since": %q, "reload": false, "check": true}`, checkOnly.Generation, checkOnly.Since.Format(time.RFC3339Nano))
	testpki.WriteFile(t, filepath.Join(f.root, "state", "owed"), "b.json", []byte(data), 0o600)
	stop, log = run(t, f, agent.Options{})
	eventually(t, "the owed check", func() bool {
		c, _ := os.ReadFile(checks)
		return strings.Count(string(c), "check") == 2
	})
	stop()
	if f.reloadCount() != 1 {
		t.Fatalf("a check owed alone reloaded: %d reloads\n%s", f.reloadCount(), log)
	}
}

// Repairs never wait for a reload or a check: with each taking 5 s, a key
// chmod-ed 0644 while it runs is 0600 again within a second.
func TestRepairDuringASlowReloadOrCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	for _, slow := range []string{"reload", "check"} {
		t.Run(slow, func(t *testing.T) {
			f := newFixture(t)
			started := filepath.Join(f.root, "started")
			cmd := fmt.Sprintf(`["/bin/sh", "-c", "touch %s; sleep 5"]`, started)
			cfg, _ := os.ReadFile(f.config)
			if slow == "reload" {
				cfg = bytes.Replace(cfg, []byte(`command = ["/bin/sh", "-c", "echo reload >> `), []byte(`command = ["/bin/sh", "-c", "touch `+started+`; sleep 5; echo reload >> `), 1)
			} else {
				cfg = bytes.Replace(cfg, []byte("\ndir = \""), []byte("\ncheck = "+cmd+"\ndir = \""), 1)
			}
			testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
			f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
			stop, log := run(t, f, agent.Options{})
			inbox := filepath.Join(f.root, "state", "inbox", "b")
			eventually(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
			p := f.ca.Issue(t, "node-1", testpki.Options{})
			testpki.WriteFile(t, inbox, "n.key", p.KeyPEM(t), 0o600)
			testpki.WriteFile(t, inbox, "n.crt", p.CertPEM(), 0o644)
			eventually(t, "the slow "+slow+" to start", func() bool { _, err := os.Stat(started); return err == nil })
			key := filepath.Join(f.live, "node.key")
			if err := os.Chmod(key, 0o644); err != nil {
				t.Fatal(err)
			}
			chmodded := time.Now()
			for {
				fi, err := os.Stat(key)
				if err == nil && fi.Mode().Perm() == 0o600 {
					t.Logf("repaired in %s during the %s", time.Since(chmodded).Round(time.Millisecond), slow)
					break
				}
				if time.Since(chmodded) > time.Second {
					t.Fatalf("the key is still %v %s after the chmod, during a 5 s %s\n%s", fi.Mode().Perm(), time.Since(chmodded), slow, log)
				}
				time.Sleep(5 * time.Millisecond)
			}
			stop() // waits for the slow action to finish
			if slow == "reload" && f.reloadCount() != 1 {
				t.Fatalf("reloads: %d\n%s", f.reloadCount(), log)
			}
		})
	}
}

// certkeeper install while the agent runs: the command reloads, and the
// agent, which sees the swap, does not reload a second time.
func TestAnInstallBesideTheAgentReloadsOnce(t *testing.T) {
	f, _ := owedFixture(t, "")
	// A reload slow enough for the agent to see the swap, and the owed
	// record, while the command's reload runs.
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte(`"/bin/sh", "-c", "echo reload`), []byte(`"/bin/sh", "-c", "sleep 0.3; echo reload`), 1), 0o600)
	c, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	b := &c.Bundles[0]
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)}))
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the agent's watch", func() bool { return strings.Contains(log.String(), "ready") })
	for i := 0; i < 3; i++ {
		p := f.ca.Issue(t, "node-1", testpki.Options{})
		out, err := agent.Install(context.Background(), b, f.inputs(t, p), "install: by hand", quiet)
		if err != nil || len(out.Reloads) != 1 {
			t.Fatalf("install %d: %+v %v", i, out, err)
		}
	}
	// The agent's rescans and repairs come and go; no reload of its own.
	for start := time.Now(); time.Since(start) < time.Second; time.Sleep(20 * time.Millisecond) {
		if n := f.reloadCount(); n > 3 {
			t.Fatalf("%d reloads for 3 installs:\n%s", n, log)
		}
	}
	stop()
	if n := f.reloadCount(); n != 3 {
		t.Fatalf("%d reloads for 3 installs:\n%s", n, log)
	}
}

// What status and check call an owed record: a check owed alone is not a
// "reload owed" (nothing will be reloaded), and a rollback is named.
func TestOwedStatusSaysWhatIsOwed(t *testing.T) {
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		o     *agent.Owed
		step  agent.OwedStep
		label string
		want  agent.OwedStatus
	}{
		{"a reload", &agent.Owed{Generation: "..gen-000002", Since: since, Reload: true}, agent.OwedRun, "reload owed",
			agent.OwedStatus{Reload: true, Generation: "..gen-000002", Since: since}},
		{"a check alone", &agent.Owed{Generation: "..gen-000002", Since: since, Check: true}, agent.OwedRun, "check owed",
			agent.OwedStatus{Check: true, Generation: "..gen-000002", Since: since}},
		{"both", &agent.Owed{Generation: "..gen-000002", Since: since, Reload: true, Check: true}, agent.OwedRun, "reload and check owed",
			agent.OwedStatus{Reload: true, Check: true, Generation: "..gen-000002", Since: since}},
		{"an interrupted rollback", &agent.Owed{Generation: "..gen-000001", Since: since, Reload: true, RollbackFrom: "..gen-000002"}, agent.OwedRollback, "rollback owed",
			agent.OwedStatus{Reload: true, Rollback: true, Generation: "..gen-000001", RollbackFrom: "..gen-000002", Since: since}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.o.Status(tc.step)
			if got == nil || got.Label() != tc.label || !strings.HasPrefix(got.Text(), tc.label+": ") || got.Detail == "" {
				t.Fatalf("%+v: label %q, text %q; want %q", got, got.Label(), got.Text(), tc.label)
			}
			got.Detail = ""
			if *got != tc.want {
				t.Errorf("status %+v, want %+v", *got, tc.want)
			}
		})
	}
	if s := (&agent.Owed{Generation: "g", Reload: true}).Status(agent.OwedNothing); s != nil || s.Text() != "" {
		t.Errorf("nothing owed: %+v", s)
	}
}

// A change's reloads and check carry the time each ended on the
// pipeline's clock, so the state records a failed reload or check when it
// was known, not when the whole change (served checks included) was
// recorded.
func TestSettleTimesEachOutcomeWhenItEnded(t *testing.T) {
	f, b := owedFixture(t, `check = ["/bin/sh", "-c", "exit 3"]`)
	p := f.ca.Issue(t, "node-1", testpki.Options{})
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	calls := 0
	pipe := agent.NewPipeline(b, quiet)
	pipe.Now = func() time.Time { calls++; return base.Add(time.Duration(calls) * time.Minute) }
	// The first generation fails its check too, with nothing to roll
	// back to; the second rolls back to it.
	for i := range 2 {
		if i == 1 {
			p = f.ca.Issue(t, "node-1", testpki.Options{})
		}
		if _, err := pipe.Install(agent.Delivery{Kind: agent.ByHand, Inputs: f.inputs(t, p), From: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	c := pipe.Settle(context.Background())
	if c.Check == nil || c.Check.Err == nil || !c.RolledBack {
		t.Fatalf("want a failed check and a rollback: %+v", c)
	}
	if c.ReloadsAt.IsZero() || !c.CheckAt.After(c.ReloadsAt) || !c.RollbackAt.After(c.CheckAt) {
		t.Fatalf("times: reloads %v, check %v, rollback %v", c.ReloadsAt, c.CheckAt, c.RollbackAt)
	}
}

// A reload that fails in a command (certkeeper install) stays owed:
// status and check warn "reload owed" instead of OK, and the same install
// again, once the reload works, runs it once (found by running the
// binary: the failure was forgotten and check said OK).
func TestACommandsFailedReloadStaysOwed(t *testing.T) {
	f, b := owedFixture(t, "")
	p := f.ca.Issue(t, "node-1", testpki.Options{})
	if err := os.Mkdir(f.reloads, 0o700); err != nil { // echo >> a directory fails
		t.Fatal(err)
	}
	out, err := agent.Install(context.Background(), b, f.inputs(t, p), "test", quiet)
	if err != nil || out.ReloadFailed() == nil {
		t.Fatalf("install with a failing reload: %v, reload error %v", err, out.ReloadFailed())
	}
	cfg, _ := agent.LoadConfig(f.config)
	if r := agent.Reports(cfg)[0]; r.Health != rotate.Warning || !strings.Contains(r.HealthText, "reload owed") {
		t.Fatalf("status after a failed reload: %v %q, want WARNING, reload owed", r.Health, r.HealthText)
	}
	if err := os.Remove(f.reloads); err != nil {
		t.Fatal(err)
	}
	out, err = agent.Install(context.Background(), b, f.inputs(t, p), "test again", quiet)
	if err != nil || out.ReloadFailed() != nil || !out.Replayed || f.reloadCount() != 1 {
		t.Fatalf("install again: %+v %v, %d reloads", out, err, f.reloadCount())
	}
	if r := agent.Reports(cfg)[0]; r.Health != rotate.OK {
		t.Fatalf("status after the reload ran: %v %q", r.Health, r.HealthText)
	}
}
