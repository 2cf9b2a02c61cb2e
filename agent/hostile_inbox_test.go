//go:build linux

package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// The running agent with its inbox a symlink to a decoy (/etc, say):
// before, it logged "not a directory" and still moved the decoy's files
// into decoy/rejected/. Now it says why it refuses the inbox and how to
// fix it, and the decoy is as it was.
func TestTheAgentLeavesASymlinkedInboxAlone(t *testing.T) {
	f := newFixture(t)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	decoy := t.TempDir()
	testpki.WriteFile(t, decoy, "passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	testpki.WriteFile(t, decoy, "shadow", []byte("root:*:19000::::::\n"), 0o600)
	os.MkdirAll(filepath.Join(f.root, "state", "inbox"), 0o711)
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	os.Symlink(decoy, inbox)
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the inbox to be refused", func() bool {
		return strings.Contains(log.String(), "inbox "+inbox+" is a symlink") && strings.Contains(log.String(), "remove the link")
	})
	time.Sleep(300 * time.Millisecond) // a settle time: what it would have done, it would have done
	stop()
	st, err := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
	if err != nil || st == nil || st.Bundles[0].LastError == nil || !strings.Contains(st.Bundles[0].LastError.Detail, "inbox refused: inbox "+inbox+" is a symlink") {
		t.Fatalf("status does not show the refusal: %+v %v", st, err)
	}
	es, _ := os.ReadDir(decoy)
	if len(es) != 2 {
		t.Fatalf("the decoy changed: %v\n%s", es, log)
	}
}

// 600 files of 1 MiB in one inbox took the agent to 942 MiB resident:
// every file was read before the set was judged. Now a set of more than
// 16 files is rejected before any is read, with the reason in rejected/.
func TestTheAgentRejectsAnOversizedSetUnread(t *testing.T) {
	f := newFixture(t)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	os.MkdirAll(inbox, 0o700)
	for i := range 600 {
		p := filepath.Join(inbox, fmt.Sprintf("f%04d.crt", i))
		fh, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		fh.Truncate(1 << 20) // sparse: 600 MiB to read, none on disk
		fh.Close()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	stop, log := run(t, f, agent.Options{})
	var reason []byte
	eventually(t, "the set to be rejected", func() bool {
		sets, _ := filepath.Glob(filepath.Join(inbox, "rejected", "*", "reason"))
		if len(sets) == 1 {
			reason, _ = os.ReadFile(sets[0])
		}
		return len(reason) > 0
	})
	stop()
	runtime.ReadMemStats(&m1)
	if !strings.Contains(string(reason), "the set has 600 files, more than the limit of 16 for one inbox set") {
		t.Fatalf("reason:\n%s\n%s", reason, log)
	}
	if a := m1.TotalAlloc - m0.TotalAlloc; a > 200<<20 {
		t.Fatalf("the agent allocated %d MiB for a set it did not read", a>>20)
	}
	t.Logf("allocated %d MiB while rejecting 600 files of 1 MiB", (m1.TotalAlloc-m0.TotalAlloc)>>20)
}

// A 0777 inbox, in which nobody plants rejected -> a directory of 15
// root-owned directories and drops a file to be rejected: before, the
// agent moved the file there and pruned 5 of the 15. Now it refuses the
// inbox as writable by others, and the 15 are whole.
func TestTheAgentRefusesAnInboxOthersCanWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, with nobody as the attacker")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	f := newFixture(t)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	for p := f.root; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	homes := filepath.Join(f.root, "home")
	for i := range 15 {
		os.MkdirAll(filepath.Join(homes, fmt.Sprintf("user%02d", i)), 0o755)
	}
	os.MkdirAll(filepath.Join(f.root, "state"), 0o711)
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	os.MkdirAll(inbox, 0o700)
	os.Chmod(filepath.Join(f.root, "state", "inbox"), 0o711)
	os.Chmod(inbox, 0o777)
	for _, args := range [][]string{{"ln", "-s", homes, filepath.Join(inbox, "rejected")}, {"sh", "-c", "echo not a bundle > " + filepath.Join(inbox, "README")}} {
		if out, err := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("as nobody: %v %s", err, out)
		}
	}
	stop, log := run(t, f, agent.Options{})
	eventually(t, "the inbox to be refused", func() bool {
		return strings.Contains(log.String(), "inbox "+inbox+" is writable by others (mode 0777)")
	})
	time.Sleep(300 * time.Millisecond)
	stop()
	if es, _ := os.ReadDir(homes); len(es) != 15 {
		t.Fatalf("%d of 15 directories left\n%s", len(es), log)
	}
	if _, err := os.Stat(filepath.Join(inbox, "README")); err != nil {
		t.Fatalf("the planted file was touched: %v", err)
	}
}
