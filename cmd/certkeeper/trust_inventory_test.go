package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// trust --inventory against four real sshd: two new keys, one already
// pinned, one whose pin differs. One table shows every fingerprint, one
// "yes" pins the new ones, the changed one is reported and left alone.
func TestTrustInventory(t *testing.T) {
	var servers []*testsshd.Server
	for range 4 {
		servers = append(servers, testsshd.Start(t, testsshd.Options{}))
	}
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	other := testsshd.NewKey(t, dir, "other", "ed25519")
	old := fmt.Sprintf("[127.0.0.1]:%d %s\n[127.0.0.1]:%d %s\n",
		servers[2].Port, servers[2].HostKeys[0].AuthorizedLine(), servers[3].Port, other.AuthorizedLine())
	os.WriteFile(kh, []byte(old), 0o644)
	var b strings.Builder
	fmt.Fprintf(&b, "[defaults]\nuser = \"root\"\nknown_hosts = %q\ntarget = \"/var/lib/certkeeper/inbox/flocker\"\n", kh)
	for i, s := range servers {
		fmt.Fprintf(&b, "\n[[node]]\nid = \"n%d\"\naddress = %q\n", i, s.Addr)
	}
	inv := filepath.Join(dir, "nodes.toml")
	os.WriteFile(inv, []byte(b.String()), 0o600)

	// "no" pins nothing.
	r := certkeeperIn(t, []byte("no\n"), "trust", "--inventory", inv)
	if r.code != 1 {
		t.Fatalf("trust --inventory answered no: %+v", r)
	}
	if data, _ := os.ReadFile(kh); string(data) != old {
		t.Fatalf("known_hosts changed without a yes:\n%s", data)
	}

	r = certkeeperIn(t, []byte("yes\n"), "trust", "--inventory", inv)
	if r.code != 1 {
		t.Fatalf("with a changed key the exit is 1: %+v", r)
	}
	for i, s := range servers {
		fp := ssh.FingerprintSHA256(s.HostKeys[0].Public)
		state := map[int]string{0: "new", 1: "new", 2: "pinned", 3: "CHANGED"}[i]
		found := false
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(l, fmt.Sprintf("n%d ", i)) && strings.Contains(l, fp) && strings.HasSuffix(strings.TrimSpace(l), state) {
				found = true
			}
		}
		if !found {
			t.Errorf("no row for n%d with %s and %s:\n%s", i, fp, state, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, `Pin the 2 new key(s) in `+kh) {
		t.Errorf("one question for the two new keys:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "HOST KEY CHANGED") || !strings.Contains(r.stderr, ssh.FingerprintSHA256(other.Public)) ||
		!strings.Contains(r.stderr, "4 host(s): 2 pinned now, 1 already pinned, 1 changed, 0 failed") {
		t.Errorf("the changed key is reported with both fingerprints, and the summary:\n%s", r.stderr)
	}
	data, _ := os.ReadFile(kh)
	for i, s := range servers[:3] {
		if !strings.Contains(string(data), fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, strings.TrimSpace(s.HostKeys[0].AuthorizedLine()))) {
			t.Errorf("n%d's key is not pinned:\n%s", i, data)
		}
	}
	if !strings.Contains(string(data), other.AuthorizedLine()) || strings.Contains(string(data), strings.TrimSpace(servers[3].HostKeys[0].AuthorizedLine())) {
		t.Errorf("the changed pin was replaced:\n%s", data)
	}

	// Again, without the changed host: nothing to do, exit 0, no question.
	r = certkeeperIn(t, nil, "trust", "--inventory", inv, "--only", "n0,n1,n2")
	if r.code != 0 || !strings.Contains(r.stdout, "3 host(s): 0 pinned now, 3 already pinned, 0 changed, 0 failed") || strings.Contains(r.stdout, "Type") {
		t.Fatalf("a second run: %+v", r)
	}
	// A host that is down is reported, the others still pinned with --yes.
	servers[1].Kill()
	os.WriteFile(kh, nil, 0o644)
	r = certkeeperIn(t, nil, "trust", "--inventory", inv, "--only", "n0,n1,n2", "--yes")
	if r.code != 1 || !strings.Contains(r.stderr, "n1 (127.0.0.1:") || !strings.Contains(r.stderr, "2 pinned now, 0 already pinned, 0 changed, 1 failed") {
		t.Fatalf("a host down: %+v", r)
	}
	if r := certkeeperIn(t, nil, "trust", "--inventory", inv, "127.0.0.1:22"); r.code != 2 {
		t.Errorf("--inventory with a HOST: %+v", r)
	}
}
