//go:build !windows

package platform

// RenameBusy reports whether err, from a rename over an existing file,
// may mean another process holds the target open. Never on Unix: a rename
// replaces a file whoever has it open (they keep the old one).
func RenameBusy(error) bool { return false }

// HeldOpen reports whether another process holds path open in a way that
// blocks replacing it: never on Unix.
func HeldOpen(string) bool { return false }

// Holders names the processes that hold path open; nil on Unix, where
// nothing holding a file blocks its replacement.
func Holders(string) []string { return nil }
