//go:build unix

package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
}

// ParseSignal accepts "HUP", "SIGHUP" or "hup".
func ParseSignal(name string) (syscall.Signal, error) {
	s, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	if !ok {
		return 0, fmt.Errorf("signal %q is not one of HUP, USR1, USR2, TERM, INT, QUIT", name)
	}
	return s, nil
}

func signalPidfile(pidfile, name string, onlyIfRunning bool) (skipped string, err error) {
	sig, err := ParseSignal(name)
	if err != nil {
		return "", err
	}
	pid, err := ReadPidfile(pidfile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if onlyIfRunning {
				return "not running (no pidfile " + pidfile + ")", nil
			}
			// Most often the daemon is not started yet (a first install).
			return "", fmt.Errorf("%w: the daemon is not running, or pidfile names another path (only_if_running = true skips the signal while it is down)", err)
		}
		return "", err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			if onlyIfRunning {
				return fmt.Sprintf("not running (pid %d from %s is gone)", pid, pidfile), nil
			}
			return "", fmt.Errorf("process %d from %s is not running (stale pidfile?)", pid, pidfile)
		}
		return "", fmt.Errorf("signal %s to process %d from %s: %w", name, pid, pidfile, err)
	}
	return "", nil
}

func restartWindowsService(context.Context, string, bool) (string, error) {
	return "", errors.New("windows_service restarts a Windows service, and this is not Windows; use systemd, signal or command")
}
