//go:build unix

package platform

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// LockDir takes an exclusive advisory lock on a directory, waiting for it,
// so two certkeeper processes (the agent and an admin's `certkeeper
// install`) never interleave their changes to one live directory. The
// kernel drops the lock when the process dies, so a crash never leaves it
// held.
func LockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// ProcessAlive reports whether a process with this id exists.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CPUTime is the CPU time this process has used (user and system), to the
// microsecond: /proc's clock ticks are too coarse for an idle daemon.
func CPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
