package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testenv"
)

func TestDecideServed(t *testing.T) {
	for _, c := range []struct {
		match       bool
		reloads     int
		policy      string
		canRollback bool
		want        agent.ServedStep
	}{
		{true, 0, agent.ServedReport, true, agent.ServedDone},
		{true, 2, agent.ServedRollback, true, agent.ServedDone},
		{false, 0, agent.ServedReport, true, agent.ServedReloadAgain},
		{false, 1, agent.ServedRollback, true, agent.ServedReloadAgain},
		{false, 2, agent.ServedReport, true, agent.ServedGiveUp},
		{false, 2, agent.ServedRollback, true, agent.ServedRollBack},
		{false, 2, agent.ServedRollback, false, agent.ServedGiveUp},
		{false, 5, agent.ServedRollback, true, agent.ServedRollBack},
	} {
		if got := agent.DecideServed(c.match, c.reloads, c.policy, c.canRollback); got != c.want {
			t.Errorf("DecideServed(%v, %d, %q, %v) = %s, want %s", c.match, c.reloads, c.policy, c.canRollback, got, c.want)
		}
	}
}

func TestServedWaitDoubles(t *testing.T) {
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if got := agent.ServedWaitFor(time.Second, i); got != want {
			t.Errorf("ServedWaitFor(1s, %d) = %s, want %s", i, got, want)
		}
	}
}

func TestConfigSources(t *testing.T) {
	testenv.NeedUnixPaths(t)
	dir := t.TempDir()
	base := "node_id = \"n1\"\nstate_dir = \"" + dir + "\"\n"
	bundle := "\n[[bundle]]\nname = \"b\"\nlayout = \"flocker-node\"\ndir = \"" + dir + "/live\"\n"
	one := base + "[source]\naddress = \"a1\"\nuser = \"u\"\nknown_hosts = \"/k\"\n" + bundle
	two := base + "[[source]]\naddress = \"a1\"\nuser = \"u\"\nknown_hosts = \"/k\"\n[[source]]\naddress = \"a2:2222\"\nuser = \"u\"\nknown_hosts = \"/k2\"\ntimeout = \"5s\"\n" + bundle
	c, err := agent.ParseConfig("one.toml", []byte(one))
	if err != nil || len(c.Sources) != 1 || c.Source == nil || c.Source.Address != "a1" {
		t.Fatalf("[source]: %v %+v", err, c)
	}
	c, err = agent.ParseConfig("two.toml", []byte(two))
	if err != nil || len(c.Sources) != 2 || c.Source.Address != "a1" || c.Sources[1].Address != "a2:2222" || c.Sources[1].Timeout.Duration != 5*time.Second || c.Sources[1].PullInterval.Duration != agent.DefaultPullInterval {
		t.Fatalf("[[source]]: %v %+v", err, c)
	}
	if _, ok := agent.ConfiguredSource(c, &c.Bundles[0]).(*agent.Failover); !ok {
		t.Fatal("two sources are not a Failover")
	}
	for _, bad := range []struct{ cfg, want string }{
		{strings.Replace(two, "timeout = \"5s\"", "tmeout = \"5s\"", 1), "unknown key"},
		{strings.Replace(two, "known_hosts = \"/k2\"\n", "", 1), "source.known_hosts"},
		{strings.Replace(two, "a2:2222", "a1", 1), "listed twice"},
		{strings.Replace(bundle, "dir =", "served = \"nope\"\ndir =", 1), "not host:port"},
		{strings.Replace(bundle, "dir =", "served = \"127.0.0.1:1\"\nserved_mismatch = \"panic\"\ndir =", 1), "not one of report, rollback"},
		{strings.Replace(bundle, "dir =", "served_name = \"x\"\ndir =", 1), "go with served"},
	} {
		cfg := bad.cfg
		if !strings.HasPrefix(cfg, "node_id") {
			cfg = base + cfg
		}
		if _, err := agent.ParseConfig("bad.toml", []byte(cfg)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("want %q, got %v for:\n%s", bad.want, err, cfg)
		}
	}
}
