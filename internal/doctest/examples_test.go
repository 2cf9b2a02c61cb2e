package doctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
)

// Every TOML example in the README, docs/ and docs/guides/ loads with the
// loader that will read it, so what an admin copies works: an agent config
// by default; a block whose first line says otherwise is an inventory
// ("# inventory") or a CA's ca.toml ("# fragment: DIR/ca.toml"). The one
// fragment left unchecked is the Windows-only reload, which this loader
// refuses off Windows on purpose.
func TestTOMLExamplesLoad(t *testing.T) {
	counts := map[string]int{}
	for _, f := range docFiles() {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repo(), f)
		for _, b := range Blocks(rel, data) {
			if b.Lang != "toml" {
				continue
			}
			first, _, _ := strings.Cut(b.Text, "\n")
			var kind string
			switch {
			case strings.HasPrefix(first, "# inventory"):
				kind = "inventory"
				_, err = distribute.ParseInventory(rel, []byte(b.Text))
			case strings.HasPrefix(first, "# fragment: DIR/ca.toml"):
				kind = "ca.toml"
				_, err = authority.ParseSettings(rel, []byte(b.Text))
			case strings.HasPrefix(first, "# fragment: Windows only"):
				kind, err = "windows", nil
			case strings.HasPrefix(first, "# fragment"):
				t.Errorf("%s:%d: a fragment this test does not know how to load; make it a whole config or teach the test", rel, b.Line)
				continue
			default:
				kind = "config"
				_, err = agent.ParseConfig(rel, []byte(b.Text))
			}
			counts[kind]++
			if err != nil {
				t.Errorf("%s:%d: %s example: %v", rel, b.Line, kind, err)
			}
		}
	}
	t.Logf("loaded: %v", counts)
	if counts["config"] == 0 || counts["inventory"] == 0 || counts["ca.toml"] == 0 {
		t.Fatalf("examples found: %v; want configs, inventories and a ca.toml", counts)
	}
}
