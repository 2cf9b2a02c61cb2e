//go:build windows

package platform

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// restartWindowsService stops a service, waits until it has stopped, and
// starts it again: Windows services have no reload. With onlyIfRunning a
// stopped service stays stopped.
func restartWindowsService(ctx context.Context, name string, onlyIfRunning bool) (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return "", fmt.Errorf("open service %s: %w", name, err)
	}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return "", fmt.Errorf("query service %s: %w", name, err)
	}
	if st.State == svc.Stopped && onlyIfRunning {
		return "not running (service " + name + " is stopped)", nil
	}
	if st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return "", fmt.Errorf("stop service %s: %w", name, err)
		}
		for st.State != svc.Stopped {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("service %s did not stop: %w", name, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
			if st, err = s.Query(); err != nil {
				return "", fmt.Errorf("query service %s: %w", name, err)
			}
		}
	}
	if err := s.Start(); err != nil {
		return "", fmt.Errorf("start service %s: %w", name, err)
	}
	return "", nil
}
