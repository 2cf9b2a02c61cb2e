//go:build !windows

package platform

import "context"

// RunAsService runs the agent under a service manager. systemd and launchd
// need no protocol beyond signals (and sd_notify, which Notifier sends),
// so outside Windows this is run(ctx): ctx is the command's, cancelled on
// SIGTERM.
func RunAsService(ctx context.Context, _ string, run func(context.Context) error) error {
	return run(ctx)
}
