//go:build windows

package platform

// LockDir is a no-op on Windows: a directory can not be locked there
// without keeping it from being renamed into, and only one certkeeper
// service runs per machine.
func LockDir(string) (func(), error) { return func() {}, nil }
