//go:build windows

package platform

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// afterInstall sets what kardianos cannot express or cannot do without:
// a delayed automatic start (after boot, once the network is up: the
// first reconcile may pull); the recovery actions, a restart after each of
// several failures, and the same when the agent exits with an error code
// rather than crashing (by default the service manager acts only on
// crashes).
//
// A service manager that does not know the delayed start or the
// non-crash recovery (Wine 8's: ERROR_INVALID_LEVEL) starts the agent at
// boot at once, or restarts it after crashes only; that is a warning, not
// a failed install.
func afterInstall(name string) ([]string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return nil, fmt.Errorf("open service %s: %w", name, err)
	}
	defer s.Close()
	var warnings []string
	delayed := windows.SERVICE_DELAYED_AUTO_START_INFO{IsDelayedAutoStartUp: 1}
	if err := windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, (*byte)(unsafe.Pointer(&delayed))); errors.Is(err, windows.ERROR_INVALID_LEVEL) {
		warnings = append(warnings, "this service manager has no delayed automatic start (SERVICE_CONFIG_DELAYED_AUTO_START_INFO: "+err.Error()+"); the agent starts at boot at once")
	} else if err != nil {
		return nil, fmt.Errorf("set delayed automatic start: %w", err)
	}
	var actions []mgr.RecoveryAction
	for _, d := range WindowsRecovery {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := s.SetRecoveryActions(actions, uint32(WindowsRecoveryReset.Seconds())); err != nil {
		return nil, fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); errors.Is(err, windows.ERROR_INVALID_LEVEL) {
		warnings = append(warnings, "this service manager cannot restart the agent after it exits with an error (SERVICE_CONFIG_FAILURE_ACTIONS_FLAG: "+err.Error()+"); it restarts it only after a crash")
	} else if err != nil {
		return nil, fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return warnings, nil
}
