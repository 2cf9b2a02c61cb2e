package platform

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// sd_notify(3) states the agent sends. Type=notify units wait for Ready
// before they count as started, and for Ready again after Reloading.
const (
	NotifyReady     = "READY=1"
	NotifyReloading = "RELOADING=1"
	NotifyStopping  = "STOPPING=1"
	NotifyWatchdog  = "WATCHDOG=1"
)

// Notifier sends sd_notify(3) messages to the service manager that started
// this process. The zero value, and a Notifier made where NOTIFY_SOCKET is
// unset, send nothing: the agent run by hand or by another init behaves
// the same, minus the messages.
type Notifier struct {
	// Socket is NOTIFY_SOCKET: a path, or "@name" for an abstract socket.
	Socket string
	// Watchdog is how often to send WATCHDOG=1: half of WATCHDOG_USEC, so
	// one late ping does not get the service killed; 0 without a watchdog.
	Watchdog time.Duration
}

// Environment variables of the protocol (systemd.exec(5)).
const (
	envNotifySocket  = "NOTIFY_SOCKET"
	envWatchdogUsec  = "WATCHDOG_USEC"
	envWatchdogPid   = "WATCHDOG_PID"
	maxWatchdogUsec  = uint64(365 * 24 * time.Hour / time.Microsecond)
	minWatchdogUsec  = 2 // halved, still at least a microsecond
	notifyStateLimit = 4096
)

// NotifierFromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once,
// at start-up. With unset it removes them from the environment, so that
// reload commands the agent runs do not inherit the agent's socket and
// talk to systemd in its name.
func NotifierFromEnv(unset bool) (*Notifier, error) {
	n := &Notifier{Socket: os.Getenv(envNotifySocket)}
	wd, err := ParseWatchdog(os.Getenv(envWatchdogUsec), os.Getenv(envWatchdogPid), os.Getpid())
	if unset {
		for _, k := range []string{envNotifySocket, envWatchdogUsec, envWatchdogPid} {
			os.Unsetenv(k)
		}
	}
	if err != nil {
		return n, err
	}
	n.Watchdog = wd
	return n, nil
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n != nil && n.Socket != "" }

// Notify sends one state ("READY=1", or several lines). Without a socket
// it does nothing and returns nil.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	if len(state) > notifyStateLimit || state == "" {
		return fmt.Errorf("sd_notify: a state of %d bytes", len(state))
	}
	if state == NotifyReloading {
		// systemd 253+ pairs a reload with the READY=1 that ends it by
		// this timestamp; older ones ignore the field.
		if usec, ok := monotonicUsec(); ok {
			state += "\nMONOTONIC_USEC=" + strconv.FormatUint(usec, 10)
		}
	}
	if err := sendNotify(n.Socket, state); err != nil {
		return fmt.Errorf("sd_notify %s to %s: %w", strings.SplitN(state, "\n", 2)[0], n.Socket, err)
	}
	return nil
}

// ParseWatchdog turns WATCHDOG_USEC and WATCHDOG_PID into the interval at
// which self (this process's pid) should send WATCHDOG=1: half the
// timeout, as sd_watchdog_enabled(3) advises. No watchdog, or one meant
// for another process (a WATCHDOG_PID that is not self), gives 0.
func ParseWatchdog(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("%s=%q is not a process id", envWatchdogPid, pid)
		}
		if p != self {
			return 0, nil
		}
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || u < minWatchdogUsec || u > maxWatchdogUsec {
		return 0, fmt.Errorf("%s=%q is not a timeout in microseconds", envWatchdogUsec, usec)
	}
	return time.Duration(u/2) * time.Microsecond, nil
}
