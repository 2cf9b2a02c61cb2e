package authority

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
)

// FuzzParseSettings: any ca.toml yields settings that pass Check or an
// error naming the file; never a panic, and never more than 50 MiB of
// allocations (the worst inputs within the limits are seeds).
func FuzzParseSettings(f *testing.F) {
	tomlcap.AddWorst(f, SettingsLimits)
	f.Add([]byte("node_days = 90\nrenew_key = \"rotate\"\ncrl_days = 7\n"))
	f.Add([]byte("node_days = 90\nnode_lifetime = \"36h\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Settings
		var err error
		if alloc := tomlcap.Alloc(func() { s, err = ParseSettings("fuzz/ca.toml", data) }); alloc > tomlcap.MaxAlloc {
			t.Fatalf("parsing %d bytes allocated %d MiB", len(data), alloc>>20)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz/ca.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := s.Check(); err != nil {
			t.Fatalf("accepted settings fail Check: %v", err)
		}
	})
}

// A ca.toml made a FIFO or a 7 KiB nest of inline tables is refused at
// once, naming the file and the limit.
func TestReadSettingsRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "deep.toml")
	os.WriteFile(deep, []byte("x = "+strings.Repeat("{a=", 900)+"1"+strings.Repeat("}", 900)+"\n"), 0o600)
	if _, err := ReadSettings(deep); err == nil || !strings.Contains(err.Error(), deep+":1: keys or tables nested deeper than the limit of 3 levels for ca.toml files") {
		t.Fatalf("deep: %v", err)
	}
	if _, err := ReadSettings(dir); err == nil || !strings.Contains(err.Error(), "not a regular file (a directory)") {
		t.Fatalf("directory: %v", err)
	}
}
