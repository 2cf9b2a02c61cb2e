//go:build unix

package agent_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// A bundle that names its daemon's endpoint but has nothing installed yet
// (the first start of a node, before the first push) has no live
// certificate a daemon could serve: the agent does not warn "daemon does
// not serve the live certificate", nor record a served check.
func TestServedCheckWaitsForAFirstBundle(t *testing.T) {
	root := t.TempDir()
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
served = "127.0.0.1:1"
`, filepath.Join(root, "state"), filepath.Join(root, "live"))
	f := &fixture{root: root, config: filepath.Join(root, "c.toml")}
	testpki.WriteFile(t, root, "c.toml", []byte(cfg), 0o600)
	stop, log := run(t, f, agent.Options{})
	eventually(t, "ready", func() bool { return strings.Contains(log.String(), "every bundle reconciled; ready") })
	stop()
	if strings.Contains(log.String(), "daemon does not serve") {
		t.Errorf("a warning about the daemon with nothing installed:\n%s", log)
	}
	st, _ := agent.ReadState(&agent.Config{StateDir: filepath.Join(root, "state")})
	if len(st.Bundles) != 1 || st.Bundles[0].Served != nil {
		t.Errorf("served state with nothing installed: %+v", st.Bundles)
	}
}
