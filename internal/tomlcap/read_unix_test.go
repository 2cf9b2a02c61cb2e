//go:build unix

package tomlcap_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
)

// A FIFO, a directory or a device in a file's place is refused at once,
// never waited on; a file over the limit is refused before it is read.
func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("a=1\n"), 1000), 0o600)
	lim := tomlcap.Limits{Bytes: 1 << 10, Depth: 3}
	for p, want := range map[string]string{
		fifo: "not a regular file (a FIFO)", dir: "not a regular file (a directory)",
		"/dev/null": "not a regular file (a device)", big: "larger than the 1 KiB limit",
	} {
		done := make(chan error, 1)
		go func() { _, err := tomlcap.ReadFile("config", p, lim); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: %v, want %q", p, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadFile blocked", p)
		}
	}
}
