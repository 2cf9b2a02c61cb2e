//go:build windows

package platform

import (
	"fmt"

	"golang.org/x/sys/windows/svc/mgr"
)

// afterInstall sets the recovery actions kardianos cannot express: a
// restart after each of several failures, and the same when the agent
// exits with an error code rather than crashing (by default the service
// manager acts only on crashes).
func afterInstall(name string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("open service %s: %w", name, err)
	}
	defer s.Close()
	var actions []mgr.RecoveryAction
	for _, d := range WindowsRecovery {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := s.SetRecoveryActions(actions, uint32(WindowsRecoveryReset.Seconds())); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}
