package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
)

// certkeeper version names the commit a binary was built from: stamped
// with -ldflags (the packages, scripts/build), which works in a linked git
// worktree, where a plain go build records none (golang/go#58218).
func TestVersionNamesTheCommit(t *testing.T) {
	testenv.NeedUnix(t, "scripts/build is a shell script")
	if testing.Short() {
		t.Skip("builds certkeeper again")
	}
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "certkeeper")
	if out, err := exec.Command("../../scripts/build", bin).CombinedOutput(); err != nil {
		t.Fatalf("scripts/build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	want := "(" + strings.TrimSpace(string(head))
	if err != nil || !strings.HasPrefix(string(out), "certkeeper "+version+" "+want) {
		t.Fatalf("version: %v %q, want the commit %s)", err, out, want)
	}
	out, err = exec.Command(bin, "version", "--json").Output()
	if err != nil || !strings.Contains(string(out), `"commit": "`+strings.TrimSpace(string(head))) {
		t.Fatalf("version --json: %v %s", err, out)
	}
}
