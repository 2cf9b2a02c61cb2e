//go:build unix

package distribute_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
)

// An inventory that is a FIFO is refused at once (push --dry-run hung on
// it), and the nested inline tables (7 KiB took 193 MiB, 31 KiB
// ran out of memory) are refused by the depth scan, naming the file and
// the limit.
func TestHostileInventoriesAreRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "inventory.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(dir, "deep.toml")
	os.WriteFile(deep, []byte("[[node]]\nid = "+strings.Repeat("{a=", 4000)+"1"+strings.Repeat("}", 4000)+"\n"), 0o600)
	for p, want := range map[string]string{
		fifo: fifo + ": not a regular file (a FIFO)",
		deep: deep + ":2: keys or tables nested deeper than the limit of 3 levels for inventory files",
	} {
		done := make(chan error, 1)
		go func() { _, err := distribute.LoadInventory(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v, want %q", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("LoadInventory(%s) blocked", p)
		}
	}
}
