//go:build linux

package main

import (
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// The config is the truth for ownership and modes: after owner, group, cert_mode,
// key_mode and dir_mode are changed in the config and the agent gets
// SIGHUP, the live files are brought in line (no install, no reload), with
// a log line; `status` shows the difference until then.
func TestAgentBringsFilesInLineWithTheConfigOnSIGHUP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	grp, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skip("no group nogroup")
	}
	gid, _ := strconv.Atoi(grp.Gid)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	n := newAgentNode(t, "")
	leaf := n.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	if r := n.install(n.files(n.bundleFor(leaf, "x"))...); r.code != 0 {
		t.Fatal(r)
	}
	a := startAgent(t, n.config)
	before := n.reloadCount()

	old, _ := os.ReadFile(n.config)
	changed := strings.Replace(string(old), "[[bundle.reload]]", "owner = \"nobody\"\ngroup = \"nogroup\"\ncert_mode = \"0640\"\nkey_mode = \"0400\"\ndir_mode = \"0750\"\n\n  [[bundle.reload]]", 1)
	if err := os.WriteFile(n.config, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	// Before the agent hears of it, status judges the files by the new config.
	if r := certkeeper(t, "status", "--config", n.config); !strings.Contains(r.stdout, "want 0750") || !strings.Contains(r.stdout, "want nobody:nogroup") {
		t.Fatalf("status does not show the drift from the config:\n%s%s", r.stdout, r.stderr)
	}
	a.signal(syscall.SIGHUP)
	want := map[string]fs.FileMode{".": 0o750, "..data/": 0o750, "node.key": 0o400, "node.crt": 0o640, "cluster.crt": 0o640}
	took := waitFor(t, "the live files to follow the config", func() bool {
		for name, mode := range want {
			fi, err := os.Stat(filepath.Join(n.live, name))
			if err != nil {
				return false
			}
			if u, g, _ := statOwner(fi); fi.Mode().Perm() != mode || u != uid || g != gid {
				return false
			}
		}
		return true
	})
	t.Logf("in line with the config %s after SIGHUP", took.Round(time.Millisecond))
	if !strings.Contains(a.log(), "repaired drift") || !strings.Contains(a.log(), "want 0400") {
		t.Fatalf("the repair is not logged:\n%s", a.log())
	}
	if r := certkeeper(t, "status", "--config", n.config); r.code != 0 || strings.Contains(r.stdout, "problem:") {
		t.Fatalf("status after the repair: %+v", r)
	}
	time.Sleep(300 * time.Millisecond)
	if c := n.reloadCount(); c != before {
		t.Fatalf("%d reloads for a change of modes, want none", c-before)
	}
	a.stop(t)
}

func statOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1, false
	}
	return int(st.Uid), int(st.Gid), true
}
