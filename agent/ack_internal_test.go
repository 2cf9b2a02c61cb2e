package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// A rejected set stops counting in the agent's health (its metric) when
// its directory is gone or the admin acknowledged it, as in check.
func TestSettledRejectedSet(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "c.toml")
	cfgText := fmt.Sprintf("node_id = \"n1\"\nstate_dir = %q\n\n[[bundle]]\nname = \"b\"\nlayout = \"flocker-node\"\ndir = %q\n",
		filepath.Join(root, "state"), filepath.Join(root, "live"))
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(root, "rejected")
	os.Mkdir(set, 0o700)
	at := time.Now()
	ev := &Event{Time: at, Result: ResultRejected, Detail: "no key", Dir: set}
	states := []BundleState{{Name: "b", LastInstall: ev, LastError: ev}}
	health := func() rotate.Health { h, _ := settledAll(c, states)[0].Health(); return h }
	if h := health(); h != rotate.Warning {
		t.Fatalf("a rejected set: %s", h)
	}
	if err := Acknowledge(c, "b", at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if h := health(); h != rotate.OK {
		t.Fatalf("after the ack: %s", h)
	}
	// Written by the one atomic write: the record alone, 0600, no
	// temporary file beside it.
	if ents, _ := os.ReadDir(filepath.Join(root, "state", "ack")); len(ents) != 1 || ents[0].Name() != "b" {
		t.Fatalf("the ack directory holds %v, want only b", ents)
	}
	if fi, err := os.Stat(ackPath(c, "b")); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("the ack record: %v %v, want 0600", fi, err)
	}
	os.RemoveAll(filepath.Join(root, "state", "ack"))
	if h := health(); h != rotate.Warning {
		t.Fatalf("the ack removed: %s", h)
	}
	os.RemoveAll(set)
	if h := health(); h != rotate.OK {
		t.Fatalf("the set's directory removed: %s", h)
	}
	if err := Acknowledge(c, "nope", at); err == nil {
		t.Error("acknowledged a bundle the config does not have")
	}
}
