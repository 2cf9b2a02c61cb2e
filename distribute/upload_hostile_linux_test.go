package distribute_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// The watcher: run as nobody by TestAPushedKeyIsNeverReadableByAnotherUser,
// it opens every file it can see in a directory (and one level below) in a
// tight loop until a deadline, keeps each descriptor it got, and at the
// end reads them all: a descriptor opened while a key was readable reads
// the key afterwards, whatever its mode became.
func init() {
	dir := os.Getenv("CERTKEEPER_TEST_WATCH")
	if dir == "" {
		return
	}
	until := time.Now().Add(60 * time.Second)
	stop := filepath.Join(dir, ".."+"/stop-watching")
	var got []*os.File
	seen := map[string]bool{}
	tryOpen := func(p string) {
		if seen[p] {
			return
		}
		if f, err := os.Open(p); err == nil {
			seen[p] = true
			got = append(got, f)
		}
	}
	fmt.Println("watching")
	for time.Now().Before(until) {
		if _, err := os.Lstat(stop); err == nil {
			break
		}
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() {
				sub, _ := os.ReadDir(p)
				for _, s := range sub {
					tryOpen(filepath.Join(p, s.Name()))
				}
				continue
			}
			tryOpen(p)
		}
	}
	leaks := 0
	for _, f := range got {
		b, _ := io.ReadAll(f)
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			leaks++
			fmt.Println("LEAK", f.Name())
		}
	}
	fmt.Println("opened", len(got), "leaks", leaks)
	os.Exit(0)
}

// reachableDir makes a test directory (and its parents under the temp
// directory) passable by nobody.
func reachableDir(t *testing.T, d string) {
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// A key pushed into a 0755 target directory (what the Flocker guide's
// mkdir makes) while nobody watches it in a tight open() loop: before,
// the key was read in 90 of 100 pushes; now in none, since the files are
// created in a 0700 directory of their own and renamed into place.
func TestAPushedKeyIsNeverReadableByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, with nobody as the watcher")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	s := testsshd.Start(t, testsshd.Options{})
	target := filepath.Join(s.Dir, "flocker")
	os.Mkdir(target, 0o755)
	reachableDir(t, target)
	// The test binary, where nobody can run it.
	bin := filepath.Join(s.Dir, "watcher")
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, data, 0o755)
	w := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", bin, "-test.run=^$")
	w.Env = append(os.Environ(), "CERTKEEPER_TEST_WATCH="+target)
	out, _ := w.StdoutPipe()
	w.Stderr = os.Stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Kill(); w.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "watching" {
		t.Fatalf("the watcher did not start: %q", lines.Text())
	}
	c := dial(t, target0(s))
	key := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+secret+secret+secret+secret+secret\n-----END PRIVATE KEY-----\n")
	const pushes = 100 // the figure: 90 of 100 leaked before
	for i := range pushes {
		err := c.Upload(context.Background(), target, []distribute.UploadFile{
			{Name: "node.crt", Data: []byte(fmt.Sprintf("certificate %d\n", i)), Mode: 0o644},
			{Name: "node.key", Data: key, Mode: 0o600},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(s.Dir, "stop-watching"), nil, 0o644)
	var report []string
	for lines.Scan() {
		report = append(report, lines.Text())
	}
	w.Wait()
	t.Logf("%d pushes; watcher: %s", pushes, report[len(report)-1])
	if len(report) == 0 || !strings.HasSuffix(report[len(report)-1], "leaks 0") {
		t.Fatalf("another user read the key during %d pushes:\n%s", pushes, strings.Join(report, "\n"))
	}
	if fi, _ := os.Stat(filepath.Join(target, "node.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.key is %v", fi.Mode())
	}
	if es, _ := os.ReadDir(target); len(es) != 2 {
		t.Fatalf("left in the target: %v", es)
	}
}

func target0(s *testsshd.Server) distribute.Target {
	return distribute.Target{Address: s.Addr, User: s.User, IdentityFile: s.Client.Path, KnownHosts: s.KnownHosts, Timeout: 20 * time.Second}
}

// A push to a node whose file system is full, or read-only, reports the
// node, the file and the reason: before, it said only sftp: "Failure".
func TestAPushToAFullOrReadOnlyNodeSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	s := testsshd.Start(t, testsshd.Options{})
	target := filepath.Join(s.Dir, "small")
	os.Mkdir(target, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", target).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", target).Run() })
	// Fill it.
	f, _ := os.Create(filepath.Join(target, "filler"))
	f.Write(make([]byte, 1<<20))
	f.Close()
	c := dial(t, target0(s))
	files := []distribute.UploadFile{{Name: "node.key", Data: bytes.Repeat([]byte("k"), 8<<10), Mode: 0o600}}
	err := c.Upload(context.Background(), target, files)
	if err == nil || !strings.Contains(err.Error(), s.Addr) || !strings.Contains(err.Error(), "(node.key)") || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("full: %v", err)
	}
	t.Logf("full: %v", err)
	os.Remove(filepath.Join(target, "filler"))
	if out, err := exec.Command("mount", "-o", "remount,ro", target).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	err = c.Upload(context.Background(), target, files)
	if err == nil || !strings.Contains(err.Error(), s.Addr) || !strings.Contains(err.Error(), "mounted read-only") {
		t.Fatalf("read-only: %v", err)
	}
	t.Logf("read-only: %v", err)
	_ = syscall.Sync
}
