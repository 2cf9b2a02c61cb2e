//go:build unix

package distribute_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// A server that stops answering in the middle of a session (SIGSTOP):
// the next SFTP operation fails after the timeout.
func TestAStalledServerTimesOutPerOperation(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	tg := target(s)
	tg.Timeout = 500 * time.Millisecond
	c := dial(t, tg)
	os.WriteFile(filepath.Join(s.Dir, "a.crt"), []byte("x"), 0o600)
	if _, err := c.Fetch(context.Background(), s.Dir, distribute.DefaultLimits, nil); err == nil {
		t.Log("fetched") // content validity is not this test's concern
	}
	procs := testsshd.Descendants(mustPid(t, s))
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	defer func() {
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGCONT)
		}
	}()
	start := time.Now()
	_, err := c.Fetch(context.Background(), s.Dir, distribute.DefaultLimits, nil)
	if err == nil || !strings.Contains(err.Error(), "no answer within 500ms") {
		t.Fatalf("want a per-operation timeout, got %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s", took)
	}
}

func mustPid(t *testing.T, s *testsshd.Server) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Dir, "sshd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
