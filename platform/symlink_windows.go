//go:build windows

package platform

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// ErrNoSymlinks says that this process cannot make symbolic links here,
// which the generation store is made of.
var ErrNoSymlinks = errors.New("cannot make symbolic links here")

// CheckSymlinks makes and removes a symbolic link inside root, so that a
// store that cannot make its links says why before it writes anything.
// Windows lets only holders of SeCreateSymbolicLinkPrivilege make them:
// SYSTEM (what the service runs as) and elevated administrators, or anyone
// in Developer Mode. Wine 8 makes none at all.
func CheckSymlinks(root *os.Root) error {
	// "..link-" is what the store's recovery removes, should a crash leave it.
	name := "..link-probe-" + TempName("")[len("..tmp-"):]
	err := root.Symlink("..data", name)
	if err == nil {
		// A layer that reports success and makes nothing (Wine 8's
		// CreateSymbolicLink) is found out by reading the link back.
		target, rerr := root.Readlink(name)
		_ = root.Remove(name)
		if rerr == nil && target == "..data" {
			return nil
		}
		return fmt.Errorf("%w: a link made here reads back as %q, %v (this Windows layer has no symbolic links; Wine before 10.20 has none)", ErrNoSymlinks, target, rerr)
	}
	switch {
	case errors.Is(err, windows.ERROR_PRIVILEGE_NOT_HELD):
		return fmt.Errorf("%w: %w (creating symbolic links needs SeCreateSymbolicLinkPrivilege: run certkeeper as the service (SYSTEM) or from an elevated prompt, or turn on Developer Mode)", ErrNoSymlinks, err)
	case errors.Is(err, windows.ERROR_NOT_SUPPORTED), errors.Is(err, windows.ERROR_INVALID_FUNCTION):
		return fmt.Errorf("%w: %w (this file system, or this Windows layer, has no symbolic links; Wine before 10.20 has none: put the bundle's dir on NTFS under real Windows)", ErrNoSymlinks, err)
	}
	return fmt.Errorf("%w: %w", ErrNoSymlinks, err)
}
