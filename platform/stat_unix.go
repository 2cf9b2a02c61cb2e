//go:build unix

package platform

import (
	"io/fs"
	"os"
	"syscall"
)

// FileOwner returns the owner of a file as Lstat saw it.
func FileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1, false
	}
	return int(st.Uid), int(st.Gid), true
}

// Euid is the effective user id of this process.
func Euid() int { return os.Geteuid() }

// SupportsOwnership reports whether files have a Unix owner and mode bits.
const SupportsOwnership = true
