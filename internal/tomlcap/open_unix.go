//go:build unix

package tomlcap

import (
	"os"
	"syscall"
)

// openNonblock opens for reading without blocking on a FIFO or a device.
func openNonblock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
