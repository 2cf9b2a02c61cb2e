package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/kardianos/service"
)

// StopTimeout bounds how long a stop request waits for the agent to finish
// (the Windows service manager gives a service about 20 seconds).
const StopTimeout = 15 * time.Second

// agentProgram adapts the agent's run function to kardianos' Start/Stop.
type agentProgram struct {
	parent context.Context
	run    func(context.Context) error
	// exit ends the process when the agent fails on its own, so that the
	// service manager sees a failure and applies its recovery actions.
	exit func(code int)

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopping bool
}

func newAgentProgram(ctx context.Context, run func(context.Context) error) *agentProgram {
	return &agentProgram{parent: ctx, run: run, exit: os.Exit}
}

// Start must not block: the service manager waits for it to report
// "running".
func (p *agentProgram) Start(service.Service) error {
	ctx, cancel := context.WithCancel(p.parent)
	p.mu.Lock()
	p.cancel, p.done = cancel, make(chan struct{})
	p.mu.Unlock()
	go func() {
		err := p.run(ctx)
		p.mu.Lock()
		p.err = err
		stopping := p.stopping
		p.mu.Unlock()
		close(p.done)
		if !stopping {
			// Returning unasked is a failure even without an error: the
			// service would otherwise look "running" with nothing running.
			if err == nil {
				err = errors.New("the agent returned without a stop request")
			}
			fmt.Fprintf(os.Stderr, "certkeeper agent: %v\n", err)
			p.exit(1)
		}
	}()
	return nil
}

// Stop cancels the agent and waits for it to finish its current step.
func (p *agentProgram) Stop(service.Service) error {
	p.mu.Lock()
	p.stopping = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-time.After(StopTimeout):
		return fmt.Errorf("the agent did not stop within %s", StopTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
