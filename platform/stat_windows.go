//go:build windows

package platform

import "io/fs"

// FileOwner is not available from a FileInfo on Windows; access is decided
// by ACLs (see acl_windows.go).
func FileOwner(fs.FileInfo) (uid, gid int, ok bool) { return -1, -1, false }

// Euid has no meaning on Windows.
func Euid() int { return -1 }

// SupportsOwnership reports whether files have a Unix owner and mode bits.
const SupportsOwnership = false
