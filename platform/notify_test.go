//go:build unix

package platform_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/sdnotifytest"
	"github.com/certkeeper/certkeeper/platform"
)

func TestNotifyArrivesOnTheSocket(t *testing.T) {
	sock := sdnotifytest.Listen(t)
	n := &platform.Notifier{Socket: sock.Addr}
	for _, state := range []string{platform.NotifyReady, platform.NotifyWatchdog, platform.NotifyStopping} {
		if err := n.Notify(state); err != nil {
			t.Fatal(err)
		}
		if got, err := sock.Next(5 * time.Second); err != nil || got != state {
			t.Fatalf("sent %q, got %q (%v)", state, got, err)
		}
	}
	// A reload carries the monotonic time systemd 253+ pairs it by.
	if err := n.Notify(platform.NotifyReloading); err != nil {
		t.Fatal(err)
	}
	got, err := sock.Next(5 * time.Second)
	if err != nil || !strings.HasPrefix(got, "RELOADING=1") {
		t.Fatalf("got %q (%v)", got, err)
	}
	if runtime.GOOS == "linux" && !strings.Contains(got, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", got)
	}
}

func TestNotifyToAnAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets are Linux's")
	}
	sock := sdnotifytest.ListenAbstract(t, fmt.Sprintf("certkeeper-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	t.Setenv("NOTIFY_SOCKET", sock.Addr)
	n, err := platform.NotifierFromEnv(false)
	if err != nil || !n.Enabled() {
		t.Fatalf("NotifierFromEnv: %+v, %v", n, err)
	}
	if err := n.Notify(platform.NotifyReady); err != nil {
		t.Fatal(err)
	}
	sock.Expect(t, "READY=1", 5*time.Second)
}

// Run by hand or by another init, the agent notifies nobody and says
// nothing about it.
func TestNotifyWithoutASocketIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := platform.NotifierFromEnv(true)
	if err != nil || n.Enabled() || n.Watchdog != 0 {
		t.Fatalf("%+v, %v", n, err)
	}
	if err := n.Notify(platform.NotifyReady); err != nil {
		t.Errorf("Notify without a socket: %v", err)
	}
	var zero *platform.Notifier
	if err := zero.Notify(platform.NotifyReady); err != nil {
		t.Errorf("nil Notifier: %v", err)
	}
}

// The environment is read once and removed, so reload commands do not
// inherit the agent's socket.
func TestNotifierFromEnvUnsetsTheEnvironment(t *testing.T) {
	sock := sdnotifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", sock.Addr)
	t.Setenv("WATCHDOG_USEC", "60000000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	n, err := platform.NotifierFromEnv(true)
	if err != nil {
		t.Fatal(err)
	}
	if n.Socket != sock.Addr || n.Watchdog != 30*time.Second {
		t.Errorf("got %+v, want socket %s and a 30s watchdog", n, sock.Addr)
	}
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set", k, v)
		}
	}
	if err := n.Notify(platform.NotifyReady); err != nil {
		t.Fatal(err)
	}
	sock.Expect(t, "READY=1", 5*time.Second)
}

func TestNotifyToAMissingSocketFails(t *testing.T) {
	n := &platform.Notifier{Socket: t.TempDir() + "/gone"}
	if err := n.Notify(platform.NotifyReady); err == nil || !strings.Contains(err.Error(), "READY=1") {
		t.Errorf("got %v, want an error naming the state and socket", err)
	}
}

func TestParseWatchdog(t *testing.T) {
	const self = 4242
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"60000000", "", 30 * time.Second, false},
		{"60000000", "4242", 30 * time.Second, false},
		{"60000000", "1", 0, false}, // meant for another process
		{"3", "", time.Microsecond, false},
		{"1", "", 0, true},
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"abc", "", 0, true},
		{"60s", "", 0, true},
		{"99999999999999999999", "", 0, true},
		{"60000000", "x", 0, true},
		{"60000000", "0", 0, true},
	} {
		got, err := platform.ParseWatchdog(c.usec, c.pid, self)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseWatchdog(%q, %q) = %s, %v; want %s, error %v", c.usec, c.pid, got, err, c.want, c.err)
		}
	}
}

func FuzzParseWatchdog(f *testing.F) {
	f.Add("60000000", "")
	f.Add("1", "7")
	f.Fuzz(func(t *testing.T, usec, pid string) {
		d, err := platform.ParseWatchdog(usec, pid, 7)
		if err != nil && d != 0 || d < 0 || d > 183*24*time.Hour {
			t.Fatalf("ParseWatchdog(%q, %q) = %s, %v", usec, pid, d, err)
		}
	})
}
