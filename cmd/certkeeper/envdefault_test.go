package main

import (
	"context"
	"sort"
	"testing"
)

// Every command's --config, --dir and --ca-dir default to
// $CERTKEEPER_CONFIG and $CERTKEEPER_CA_DIR (DESIGN.md), not to a path of
// its own: an admin who exports CERTKEEPER_CA_DIR for push gets the same
// CA from fleet status, and CERTKEEPER_CONFIG reaches service install.
func TestEveryCommandTakesItsDefaultsFromTheEnvironment(t *testing.T) {
	t.Setenv(envConfig, "/env/certkeeper.toml")
	t.Setenv(envCADir, "/env/ca")
	want := map[string]string{"config": "/env/certkeeper.toml", "dir": "/env/ca", "ca-dir": "/env/ca"}
	var all []*command
	for _, c := range commands {
		if c.run != nil {
			all = append(all, c)
		}
	}
	for _, subs := range groups {
		for _, c := range subs {
			all = append(all, c)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	seen := 0
	for _, c := range all {
		pf := describeFlags(context.Background(), c)
		if pf == nil {
			continue
		}
		for name, w := range want {
			f := pf.Lookup(name)
			if f == nil {
				continue
			}
			seen++
			if f.DefValue != w {
				t.Errorf("certkeeper %s --%s defaults to %q with %s/%s set; want %q", c.name, name, f.DefValue, envConfig, envCADir, w)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("only %d flags looked at: the command table was not walked", seen)
	}
}
