//go:build windows

package platform

import (
	"errors"
	"syscall"
)

var errNoSignals = errors.New("signals do not exist on Windows; use a command or a service restart")

// ParseSignal always fails on Windows.
func ParseSignal(string) (syscall.Signal, error) { return 0, errNoSignals }

func signalPidfile(string, string, bool) (string, error) { return "", errNoSignals }
