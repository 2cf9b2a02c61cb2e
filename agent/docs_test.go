package agent_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
)

var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// Every config example in the README, docs/ and docs/guides/ loads with the real loader,
// so what an admin copies works. Blocks that are not agent configs say so
// on their first line (# inventory).
func TestDocExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	guides, _ := filepath.Glob("../docs/guides/*.md")
	files = append(append(files, guides...), "../README.md")
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range tomlBlock.FindAllSubmatch(data, -1) {
			if regexp.MustCompile(`^# (inventory|fragment)`).Match(m[1]) {
				continue
			}
			n++
			if _, err := agent.ParseConfig(f, m[1]); err != nil {
				t.Errorf("%s, toml block %d: %v", f, i+1, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no toml examples found")
	}
}
