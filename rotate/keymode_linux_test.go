//go:build linux

package rotate_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// testGID is a group that is neither root's nor the test's: nogroup.
const testGID = 65534

// installGroupReadable installs a glow bundle with key_mode 0640 and group
// testGID into dir.
func installGroupReadable(t *testing.T, dir string) {
	t.Helper()
	km, dm := fs.FileMode(0o640), fs.FileMode(0o750)
	l, err := rotate.ResolveLayout("glow", "node-1", rotate.Overrides{Dir: &dir, KeyMode: &km, DirMode: &dm, Group: strconv.Itoa(testGID)})
	if err != nil {
		t.Fatal(err)
	}
	owner := platform.Owner{UID: -1, GID: testGID, Group: strconv.Itoa(testGID)}
	mgr := rotate.NewManager(rotate.Spec{Name: "glow", Layout: l, NodeID: "node-1", Owner: owner})
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"node-1"}})
	if _, err := mgr.Install([]rotate.Input{in("ca.cer", ca.CertPEM()), in("localhost.cer", leaf.CertPEM()), in("localhost.key", leaf.KeyPEM(t))}, "test"); err != nil {
		t.Fatal(err)
	}
}

// The helper process the strace test traces: one install, nothing else.
func TestGroupKeyHelper(t *testing.T) {
	dir := os.Getenv("CERTKEEPER_GROUPKEY_DIR")
	if dir == "" {
		t.Skip("helper for TestGroupReadableKeyFromFirstByte")
	}
	installGroupReadable(t, dir)
}

// A group-readable key is created 0640 and handed to its group before its
// first byte is written: at no instant is it more open than 0640 root:group,
// nor readable by its group while the file still belongs to root's group
// holding key bytes. The real system calls, as strace sees them, prove the
// order: the key is opened O_CREAT|O_EXCL with mode 0640, fchown-ed to the
// group, and only then written.
func TestGroupReadableKeyFromFirstByte(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another group (scripts/test runs as root)")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace not found: scripts/test installs it (apt-get install strace)")
	}
	dir := filepath.Join(t.TempDir(), "live")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, "-e", "trace=openat,openat2,open,fchown,fchownat,fchmod,fchmodat,write,pwrite64,close",
		os.Args[0], "-test.run=^TestGroupKeyHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CERTKEEPER_GROUPKEY_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("traced install: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	calls := joinResumed(string(raw))

	// The final state first.
	fi, err := os.Stat(filepath.Join(dir, "localhost.key"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != testGID {
		t.Fatalf("live key is %04o %d:%d, want 0640 0:%d", fi.Mode().Perm(), st.Uid, st.Gid, testGID)
	}

	// Every file named localhost.key the install created (the live copy and
	// the sealed one) follows open(0640 or 0600) → fchown → write.
	openRe := regexp.MustCompile(`^(\d+)\s+openat2?\(.*"([^"]*localhost\.key)".*O_CREAT.*?(0[0-7]{3}).*\) = (\d+)$`)
	seen := 0
	for i, c := range calls {
		mt := openRe.FindStringSubmatch(c)
		if mt == nil {
			continue
		}
		seen++
		mode, _ := strconv.ParseUint(mt[3], 8, 32)
		if fs.FileMode(mode)&^0o640 != 0 {
			t.Errorf("%s created with mode %s, more open than 0640: %s", mt[2], mt[3], c)
		}
		fd := mt[4]
		chowned := false
		for _, d := range calls[i+1:] {
			f := strings.Fields(d)
			if len(f) < 2 {
				continue
			}
			call := f[1]
			switch {
			case strings.HasPrefix(call, "fchown("+fd+","):
				if !strings.Contains(d, fmt.Sprintf(", %d)", testGID)) {
					t.Errorf("%s: fchown to another group: %s", mt[2], d)
				}
				chowned = true
			case strings.HasPrefix(call, "write("+fd+","), strings.HasPrefix(call, "pwrite64("+fd+","):
				if !chowned {
					t.Errorf("%s: written before it was given to group %d: %s", mt[2], testGID, d)
				}
			case strings.HasPrefix(call, "close("+fd+")"):
				goto next
			}
		}
	next:
		if !chowned {
			t.Errorf("%s: never fchown-ed to group %d", mt[2], testGID)
		}
	}
	if seen < 2 {
		t.Fatalf("strace saw %d creations of localhost.key, want the live and the sealed copy; trace:\n%s", seen, strings.Join(calls, "\n"))
	}
}

// joinResumed joins strace -f's "<unfinished ...>" and "<... resumed>"
// halves into whole calls, in the order they finished.
func joinResumed(out string) []string {
	var calls []string
	pending := map[string]string{}
	resumed := regexp.MustCompile(`^(\d+)\s+<\.\.\. \w+ resumed>(.*)$`)
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if m := resumed.FindStringSubmatch(line); m != nil {
			calls = append(calls, pending[m[1]]+m[2])
			delete(pending, m[1])
			continue
		}
		if head, ok := strings.CutSuffix(line, " <unfinished ...>"); ok {
			pid := strings.Fields(head)[0]
			pending[pid] = head
			continue
		}
		calls = append(calls, line)
	}
	return calls
}
