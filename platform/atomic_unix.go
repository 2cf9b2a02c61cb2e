//go:build !windows

package platform

import (
	"errors"
	"syscall"
)

// canSyncDir: a Unix directory opened for reading can be fsynced, which
// makes the renames in it durable.
const canSyncDir = true

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
