//go:build windows

package platform

import "errors"

// The Windows service manager has no NOTIFY_SOCKET; RunAsService reports
// the service's state instead.
func sendNotify(string, string) error {
	return errors.New("sd_notify does not exist on Windows")
}

func monotonicUsec() (uint64, bool) { return 0, false }
