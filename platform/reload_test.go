//go:build unix

package platform_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/platform"
)

// A real process that traps SIGHUP gets it through its pid file.
func TestSignalReachesThePidfileProcess(t *testing.T) {
	dir := t.TempDir()
	pidfile, marker := filepath.Join(dir, "d.pid"), filepath.Join(dir, "got-hup")
	cmd := exec.Command("/bin/sh", "-c", `trap 'echo hup > `+marker+`' HUP; echo $$ > `+pidfile+`; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool { b, _ := os.ReadFile(pidfile); return len(b) > 0 })

	r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: pidfile, Timeout: time.Second})
	if r.Err != nil || r.Skipped != "" {
		t.Fatalf("RunReload: %+v", r)
	}
	waitFor(t, func() bool { _, err := os.Stat(marker); return err == nil })
}

func TestSignalToAStoppedService(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.pid")
	if r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: missing}); r.Err == nil || !errors.Is(r.Err, os.ErrNotExist) || !strings.Contains(r.Err.Error(), "only_if_running = true") {
		t.Errorf("signal with a missing pidfile: %v; want a failure that names only_if_running", r.Err)
	}
	if r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: missing, OnlyIfRunning: true}); r.Err != nil || r.Skipped == "" {
		t.Errorf("only_if_running with no pidfile: %+v", r)
	}
	// A stale pid: a process that has exited.
	cmd := exec.Command("/bin/true")
	cmd.Run()
	stale := filepath.Join(dir, "stale.pid")
	os.WriteFile(stale, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	if r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: stale}); r.Err == nil || !strings.Contains(r.Err.Error(), "not running") {
		t.Errorf("stale pidfile: %+v", r)
	}
	if r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: stale, OnlyIfRunning: true}); r.Err != nil || r.Skipped == "" {
		t.Errorf("stale pidfile, only_if_running: %+v", r)
	}
	garbage := filepath.Join(dir, "garbage.pid")
	os.WriteFile(garbage, []byte("not a pid\n"), 0o644)
	if r := platform.RunReload(context.Background(), platform.ReloadAction{Signal: "HUP", Pidfile: garbage}); r.Err == nil || !strings.Contains(r.Err.Error(), "does not hold a process id") {
		t.Errorf("garbage pidfile: %+v", r)
	}
}

func TestCommandOutputExitAndTimeout(t *testing.T) {
	r := platform.RunReload(context.Background(), platform.ReloadAction{Command: []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 4"}})
	if r.ExitCode != 4 || r.Err == nil || !strings.Contains(r.Output, "out") || !strings.Contains(r.Output, "err") {
		t.Errorf("failing command: %+v", r)
	}
	start := time.Now()
	r = platform.RunReload(context.Background(), platform.ReloadAction{Command: []string{"sleep", "10"}, Timeout: 200 * time.Millisecond})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "timed out after 200ms") || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %+v after %s", r, time.Since(start))
	}
	// No shell unless asked: the argument is one argument, not a script.
	r = platform.RunReload(context.Background(), platform.ReloadAction{Command: []string{"echo", "a; echo b"}})
	if r.Err != nil || r.Output != "a; echo b" {
		t.Errorf("argument array: %+v", r)
	}
	r = platform.RunReload(context.Background(), platform.ReloadAction{Command: []string{"echo a; echo b"}, Shell: true})
	if r.Err != nil || r.Output != "a\nb" {
		t.Errorf("shell: %+v", r)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for range 100 {
		if ok() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met within 2s")
}
