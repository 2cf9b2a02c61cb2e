//go:build windows

package platform

import (
	"context"
	"fmt"

	"golang.org/x/sys/windows/svc"
)

// RunAsService runs the agent as the Windows service name: it reports
// "running" to the service control manager, and cancels ctx when the
// manager asks the service to stop or the machine shuts down. The agent
// command calls it when given --service (which `certkeeper service
// install` puts in the service's arguments), and only then. When the
// agent fails on its own the process exits with status 1, which the
// recovery actions set at install answer with a restart.
//
// It talks to the service manager itself (svc.Run) rather than through
// kardianos, which guesses from the parent process whether it runs as a
// service (svc.IsWindowsService) and, where the guess is wrong (under
// Wine), runs the agent without ever answering the manager: --service
// already says it.
func RunAsService(ctx context.Context, name string, run func(context.Context) error) error {
	h := &serviceHandler{p: newAgentProgram(ctx, run)}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return h.err
}

type serviceHandler struct {
	p   *agentProgram
	err error
}

// Execute is called by the service manager's dispatcher: it reports the
// service's states and answers stop and shutdown.
func (h *serviceHandler) Execute(_ []string, r <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	changes <- svc.Status{State: svc.StartPending}
	if err := h.p.Start(nil); err != nil {
		h.err = err
		return true, 1
	}
	changes <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for c := range r {
		switch c.Cmd {
		case svc.Interrogate:
			changes <- c.CurrentStatus
		case svc.Stop, svc.Shutdown:
			changes <- svc.Status{State: svc.StopPending}
			if err := h.p.Stop(nil); err != nil {
				h.err = err
				return true, 2
			}
			return false, 0
		}
	}
	return false, 0
}
