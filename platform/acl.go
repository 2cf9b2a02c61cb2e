//go:build !windows

package platform

import "io/fs"

// SecureDir gives a directory the access a Unix mode means, where modes do
// not exist; on Unix the mode bits, set by the caller, are the access.
func SecureDir(string, fs.FileMode) error { return nil }

// SecureFile is SecureDir for a file.
func SecureFile(string, fs.FileMode) error { return nil }
