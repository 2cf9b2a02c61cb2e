package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ReloadAction makes a daemon pick up new certificates. Exactly one of
// Systemd, WindowsService, Signal+Pidfile and Command is set.
type ReloadAction struct {
	Systemd string
	Signal  string
	Pidfile string
	Command []string
	// Shell runs Command[0] with /bin/sh -c; only when the config asks.
	Shell bool
	// OnlyIfRunning keeps a stopped service stopped.
	OnlyIfRunning bool
	Timeout       time.Duration

	// WindowsService is restarted: Windows services have no reload.
	WindowsService string
}

func (a ReloadAction) String() string {
	switch {
	case a.Systemd != "":
		return "systemd " + a.Systemd
	case a.WindowsService != "":
		return "windows service " + a.WindowsService
	case a.Signal != "":
		return fmt.Sprintf("signal %s to %s", a.Signal, a.Pidfile)
	case a.Shell:
		return "sh -c " + strconv.Quote(strings.Join(a.Command, " "))
	}
	return "command " + strings.Join(a.Command, " ")
}

// ReloadResult is what one action did, for logs, status and metrics.
type ReloadResult struct {
	Action   string
	Skipped  string // why the action did not run (the service is stopped)
	Output   string
	ExitCode int
	Duration time.Duration
	Err      error
}

// maxOutput bounds what is kept of a command's output for the log.
const maxOutput = 16 << 10

// RunReload runs one action with its timeout.
func RunReload(ctx context.Context, a ReloadAction) ReloadResult {
	start := time.Now()
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := ReloadResult{Action: a.String()}
	switch {
	case a.Systemd != "":
		verb := "reload-or-restart"
		if a.OnlyIfRunning {
			verb = "try-reload-or-restart"
		}
		r.Output, r.ExitCode, r.Err = run(ctx, []string{"systemctl", verb, a.Systemd})
	case a.WindowsService != "":
		r.Skipped, r.Err = restartWindowsService(ctx, a.WindowsService, a.OnlyIfRunning)
	case a.Signal != "":
		r.Skipped, r.Err = signalPidfile(a.Pidfile, a.Signal, a.OnlyIfRunning)
	default:
		argv := a.Command
		if a.Shell {
			argv = []string{"/bin/sh", "-c", a.Command[0]}
		}
		r.Output, r.ExitCode, r.Err = run(ctx, argv)
	}
	if r.Err != nil && ctx.Err() == context.DeadlineExceeded {
		r.Err = fmt.Errorf("%s: timed out after %s: %w", r.Action, timeout, r.Err)
	}
	r.Duration = time.Since(start)
	return r
}

func run(ctx context.Context, argv []string) (string, int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A reload command that forks a daemon keeps our pipes open; stop
	// waiting for them shortly after the command itself ends.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return strings.TrimSpace(out.String()), code, err
}

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

// ReadPidfile reads a process id from a pid file.
func ReadPidfile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("pidfile: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, _ := f.Read(buf)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pidfile %s does not hold a process id (%q)", path, strings.TrimSpace(string(buf[:n])))
	}
	return pid, nil
}
