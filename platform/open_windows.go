//go:build windows

package platform

import "os"

// OpenInput opens a file given as input. Callers Lstat first; Windows has
// no O_NOFOLLOW.
func OpenInput(path string) (*os.File, error) { return os.Open(path) }
