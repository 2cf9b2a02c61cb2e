//go:build windows

package platform

import (
	"context"
	"fmt"

	"github.com/kardianos/service"
)

// RunAsService runs the agent as the Windows service name: it reports
// "running" to the service control manager, and cancels ctx when the
// manager asks the service to stop or the machine shuts down. The agent
// command calls it when given --service (which `certkeeper service
// install` puts in the service's arguments), and only then. When the
// agent fails on its own the process exits with status 1, which the
// recovery actions set at install answer with a restart.
func RunAsService(ctx context.Context, name string, run func(context.Context) error) error {
	p := newAgentProgram(ctx, run)
	s, err := service.New(p, &service.Config{Name: name})
	if err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return s.Run()
}
