//go:build unix

package platform

import (
	"os"
	"syscall"
)

// OpenInput opens a file given as input without following a symlink at the
// last component, and without blocking on a FIFO someone planted there.
func OpenInput(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
