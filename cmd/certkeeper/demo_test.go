//go:build linux

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demoRun is `certkeeper demo` running with its own TMPDIR, its output
// read line by line as it comes.
type demoRun struct {
	t      *testing.T
	tmp    string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	d := &demoRun{t: t, tmp: t.TempDir(), done: make(chan struct{})}
	d.cmd = exec.Command(binary, append([]string{"demo"}, args...)...)
	d.cmd.Env = append(os.Environ(), "TMPDIR="+d.tmp)
	d.cmd.Stderr = &d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
		}
		err := d.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			d.code = ee.ExitCode()
		} else if err != nil {
			d.code = -1
		}
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// wait waits for the demo to end, at most limit.
func (d *demoRun) wait(limit time.Duration) {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Fatalf("the demo did not end within %s:\n%s", limit, d.output())
	}
}

func (d *demoRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n") + "\n" + d.stderr.String()
}

// waitLine waits until a line matches re, at most limit.
func (d *demoRun) waitLine(re *regexp.Regexp, limit time.Duration) {
	d.t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		d.mu.Lock()
		for _, l := range d.lines {
			if re.MatchString(l) {
				d.mu.Unlock()
				return
			}
		}
		d.mu.Unlock()
	}
	d.t.Fatalf("no line matching %s within %s:\n%s", re, limit, d.output())
}

// steps returns the demo's step results: "ok" or "FAIL", and the text of
// the step's first line.
func (d *demoRun) steps() (ok, failed []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	re := regexp.MustCompile(`^  (ok  |FAIL)  (.*)$`)
	for _, l := range d.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			if m[1] == "FAIL" {
				failed = append(failed, m[2])
			} else {
				ok = append(ok, m[2])
			}
		}
	}
	return ok, failed
}

// checkNothingLeft checks that no process the demo started is running
// (every one of them names the demo's directory, under d.tmp, on its
// command line) and, unless kept, that the directory is gone.
func (d *demoRun) checkNothingLeft(kept bool) {
	d.t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, []byte(d.tmp)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid == d.cmd.Process.Pid {
			continue
		}
		// A zombie has no command line; this one is alive.
		d.t.Errorf("pid %d is still running after the demo: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	ents, err := os.ReadDir(d.tmp)
	if err != nil {
		d.t.Fatal(err)
	}
	switch {
	case kept && len(ents) != 1:
		d.t.Errorf("--keep: %d entries in TMPDIR, want the demo's directory", len(ents))
	case !kept && len(ents) != 0:
		d.t.Errorf("the demo left %s in TMPDIR", ents[0].Name())
	}
}

// certkeeper demo, as the README runs it but without a terminal: exit 0;
// every step reported, none failed; each part of the story is there (the
// issue, the push, the pull, the CSR renewal, the drift repair, the bad
// bundle, each node's renewal with one reload, the clean-up); and nothing
// left running or on disk.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for about 20 seconds; scripts/test runs it in its normal pass")
	}
	t.Parallel()
	d := startDemo(t, "--non-interactive")
	d.wait(3 * time.Minute)
	out := d.output()
	ok, failed := d.steps()
	if d.code != 0 || len(failed) > 0 {
		t.Fatalf("exit %d, %d steps failed: %s\n%s", d.code, len(failed), strings.Join(failed, "\n"), out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("--non-interactive output holds terminal escapes")
	}
	m := regexp.MustCompile(`(?m)^demo: all (\d+) steps ok in ([0-9.]+)s$`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(len(ok)) {
		t.Errorf("no summary line for %d steps:\n%s", len(ok), out)
	}
	want := []string{
		`^ca init: CA "demo-cluster"`,
		`^ca issue: node1, node2, node3`,
		`^admin host's sshd on 127\.0\.0\.1:\d+`,
		`^node1's sshd on 127\.0\.0\.1:\d+`,
		`^certkeeper push --inventory .*: node1 \(127\.0\.0\.1:\d+\) ok`,
		`^node1's agent installed what came into its inbox`,
		`^node2's agent installed what it pulled at its start`,
		`^node3's agent installed what it pulled at its start`,
		`^node1's daemon .* serves mutual TLS`,
		`^node2's daemon .* serves mutual TLS`,
		`^node3's daemon .* serves mutual TLS`,
		`^chmod 644 node1/etc/flocker/node\.key: the agent put it back to 0600`,
		`^node2's certificate, key and CA dropped into node1's inbox .*: rejected`,
		`^admin host: node3's key logged in as certkeeper-ca`,
		`^the admin host's timer: certkeeper ca renew --within 40%: re-issued node1, node2`,
		`^the admin host's timer: certkeeper push: node1`,
		`^node1 renewed by push: serial \S+ → \S+; its daemon reloaded once`,
		`^node2 renewed by pull: serial \S+ → \S+; its daemon reloaded once`,
		`^node3 renewed by csr: serial \S+ → \S+; its daemon reloaded once`,
		`^stopped 3 agents \(pids [0-9, ]+\), 3 daemons \(pids [0-9, ]+\) and 2 SSH servers`,
		`^removed /`,
	}
	for _, w := range want {
		re := regexp.MustCompile(w)
		found := false
		for _, s := range ok {
			found = found || re.MatchString(s)
		}
		if !found {
			t.Errorf("no step matching %s", w)
		}
	}
	// The rejection's reason is the agent's own, for the right file.
	if !strings.Contains(out, `certificate is for "node2"`) || !strings.Contains(out, `this node is "node1"`) {
		t.Errorf("the bad bundle's reason is not shown:\n%s", out)
	}
	if !strings.Contains(out, "NODE   LAYOUT") {
		t.Errorf("no status table:\n%s", out)
	}
	d.checkNothingLeft(false)
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	t.Logf("the demo took %ss, %d steps", m[2], len(ok))
}

// Ctrl-C in the middle stops everything the demo started and removes its
// directory; with --keep, the directory stays and the processes still
// stop. Exit 1, and a line saying so.
func TestDemoInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo twice for a few seconds; scripts/test runs it in its normal pass")
	}
	t.Parallel()
	for _, keep := range []bool{false, true} {
		var args []string
		if keep {
			args = append(args, "--keep")
		}
		d := startDemo(t, append(args, "--non-interactive")...)
		// Once the daemons run, every kind of process is up.
		d.waitLine(regexp.MustCompile(`^== Drift repair`), 90*time.Second)
		d.cmd.Process.Signal(os.Interrupt)
		d.wait(time.Minute)
		out := d.output()
		if d.code != 1 || !strings.Contains(out, "certkeeper demo: interrupted after") {
			t.Fatalf("keep=%v: exit %d after Ctrl-C:\n%s", keep, d.code, out)
		}
		if _, failed := d.steps(); len(failed) > 0 {
			t.Errorf("keep=%v: steps failed: %s", keep, strings.Join(failed, "\n"))
		}
		if !strings.Contains(out, "stopped 3 agents") {
			t.Errorf("keep=%v: the clean-up did not report its stops:\n%s", keep, out)
		}
		if keep && !strings.Contains(out, "Kept "+d.tmp) {
			t.Errorf("--keep does not say where:\n%s", out)
		}
		d.checkNothingLeft(keep)
	}
}

// scripts/demo, the README's first command, finds Go where the Debian
// set-up puts it (/usr/local/go/bin, not on a fresh root's PATH), builds
// certkeeper, hands its arguments to `certkeeper demo`, and leaves nothing
// behind. (TestDemo runs the demo itself; --help keeps this one short.)
func TestScriptsDemo(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH")
	}
	gocache, _ := exec.Command(goBin, "env", "GOCACHE").Output()
	gomodcache, _ := exec.Command(goBin, "env", "GOMODCACHE").Output()
	tmp := t.TempDir()
	cmd := exec.Command("/bin/sh", "../../scripts/demo", "--help")
	path := "/usr/bin:/bin"
	if dir := filepath.Dir(goBin); dir != "/usr/local/go/bin" {
		path += ":" + dir // a Go installed elsewhere than the script looks
	}
	cmd.Env = []string{"PATH=" + path, "HOME=" + os.Getenv("HOME"), "TMPDIR=" + tmp,
		"GOCACHE=" + strings.TrimSpace(string(gocache)), "GOMODCACHE=" + strings.TrimSpace(string(gomodcache))}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: certkeeper demo [--keep]") {
		t.Fatalf("scripts/demo --help: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("scripts/demo left %s in TMPDIR", ents[0].Name())
	}
}
