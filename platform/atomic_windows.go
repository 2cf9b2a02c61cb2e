//go:build windows

package platform

import (
	"errors"

	"golang.org/x/sys/windows"
)

// canSyncDir: Windows cannot fsync a directory opened for reading
// (FlushFileBuffers answers "Access denied"); see AtomicWrite for the
// durability NTFS gives instead.
const canSyncDir = false

func isDiskFull(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL)
}
