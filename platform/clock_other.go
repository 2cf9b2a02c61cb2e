//go:build unix && !linux

package platform

// Only systemd reads MONOTONIC_USEC=, and only Linux has systemd.
func monotonicUsec() (uint64, bool) { return 0, false }
