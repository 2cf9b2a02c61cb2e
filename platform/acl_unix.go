//go:build !windows

package platform

import "io/fs"

// SecureDir gives a directory the access a Unix mode means, where modes do
// not exist; on Unix the mode bits, set by the caller, are the access.
func SecureDir(string, fs.FileMode) error { return nil }

// SecureFile is SecureDir for a file.
func SecureFile(string, fs.FileMode) error { return nil }

// AccessDrift says how a file's access list grants more than mode means
// (see LooseAccess). Unix has only the mode bits, which the caller judges
// itself: never any here.
func AccessDrift(string, fs.FileMode) ([]string, error) { return nil, nil }

// AccessListsKept reports whether files keep the access lists SecureFile
// sets, so that AccessDrift means something: there are none on Unix.
func AccessListsKept() bool { return false }
