//go:build unix

package platform

import (
	"errors"
	"fmt"
	"os"
	"syscall"
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
