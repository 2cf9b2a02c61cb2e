package platform_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/platform"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

const helperArg = "certkeeper-reload-helper"

// TestWindowsServiceHelper is the daemon of the test below: this test
// binary, run by the service manager with helperArg and a file, notes each
// start in the file and answers start and stop.
func TestWindowsServiceHelper(t *testing.T) {
	args := flag.Args()
	if len(args) != 2 || args[0] != helperArg {
		t.Skip("the service TestWindowsServiceRestartReload runs")
	}
	f, err := os.OpenFile(args[1], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("start\n")
	f.Close()
	if err := svc.Run("", helper{}); err != nil {
		t.Fatal(err)
	}
}

type helper struct{}

func (helper) Execute(_ []string, r <-chan svc.ChangeRequest, s chan<- svc.Status) (bool, uint32) {
	s <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for c := range r {
		switch c.Cmd {
		case svc.Interrogate:
			s <- c.CurrentStatus
		case svc.Stop, svc.Shutdown:
			return false, 0
		}
	}
	return false, 0
}

// A windows_service reload stops the service, waits until it has stopped,
// and starts it again; with only_if_running a stopped one stays stopped.
// Under Wine the service manager is the test prefix's own; on a real
// Windows this registers a service, so it runs only with
// CERTKEEPER_TEST_SERVICE=1 (as an administrator).
func TestWindowsServiceRestartReload(t *testing.T) {
	if !testenv.UnderWine() && os.Getenv("CERTKEEPER_TEST_SERVICE") != "1" {
		t.Skip("registers a real Windows service; set CERTKEEPER_TEST_SERVICE=1 (as an administrator) to run it")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	starts := filepath.Join(t.TempDir(), "starts")
	const name = "certkeeper-test-reload"
	m, err := mgr.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Disconnect()
	remove := func() {
		if s, err := m.OpenService(name); err == nil {
			s.Control(svc.Stop)
			waitState(t, s, svc.Stopped)
			s.Delete()
			s.Close()
		}
	}
	remove() // a leftover of an interrupted run
	s, err := m.CreateService(name, exe, mgr.Config{StartType: mgr.StartManual}, "-test.run=^TestWindowsServiceHelper$", helperArg, starts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	t.Cleanup(remove)
	s, err = m.OpenService(name)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	r := platform.RunReload(context.Background(), platform.ReloadAction{WindowsService: name, OnlyIfRunning: true})
	if r.Err != nil || !strings.Contains(r.Skipped, "is stopped") {
		t.Fatalf("only_if_running on a stopped service: %+v", r)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, svc.Running)
	r = platform.RunReload(context.Background(), platform.ReloadAction{WindowsService: name, Timeout: 30 * time.Second})
	if r.Err != nil || r.Skipped != "" {
		t.Fatalf("restart: %+v", r)
	}
	waitState(t, s, svc.Running)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(starts)
		if n := strings.Count(string(b), "start\n"); n == 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the service started %d times, want 2 (once, then once by the reload)", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitState(t *testing.T, s *mgr.Service, want svc.State) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := s.Query()
		if err == nil && st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: state %v (%v), want %v", s.Name, st.State, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
