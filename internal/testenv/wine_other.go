//go:build !windows

package testenv

// UnderWine reports whether this Windows process runs under Wine: never,
// here.
func UnderWine() bool { return false }
