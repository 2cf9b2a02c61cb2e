//go:build windows

package platform

import (
	"os"
	"time"
)

// ProcessAlive reports whether a process with this id exists.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}

// CPUTime is not measured on Windows.
func CPUTime() (time.Duration, bool) { return 0, false }
