//go:build unix

package demo

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is a process the demo started: an agent, a daemon. Each runs in
// its own process group, so a Ctrl-C on the terminal reaches the demo
// alone, which then stops them in order; on Linux each also gets SIGTERM
// if the demo dies without stopping it.
type proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(name, exe string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the demo's environment without systemd's notification and
// watchdog variables: the agents answer to the demo, not to a service
// manager the demo may run under.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") || strings.HasPrefix(kv, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Pid is the process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errKilled says a process ignored SIGTERM for the whole grace period.
var errKilled = errors.New("killed")

// Stop sends SIGTERM and waits up to grace, then kills and waits. It
// returns the process's exit error (nil for a clean exit 0), or errKilled.
func (p *proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.exitErr()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return errKilled
}

func (p *proc) exitErr() error { return p.err }
