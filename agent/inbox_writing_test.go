//go:build unix

package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// A file still being written (a PEM block without its END line, as a slow
// scp leaves it) waits in the inbox; the agent does not log "delivery
// refused" for a set it has not judged yet, and installs it once whole.
func TestInboxFileStillBeingWrittenIsNotRefused(t *testing.T) {
	root := t.TempDir()
	cfg := fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
debounce = "50ms"
`, filepath.Join(root, "state"), filepath.Join(root, "live"))
	f := &fixture{root: root, config: filepath.Join(root, "c.toml")}
	testpki.WriteFile(t, root, "c.toml", []byte(cfg), 0o600)
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	_, log := run(t, f, agent.Options{})
	eventually(t, "ready", func() bool { return strings.Contains(log.String(), "every bundle reconciled; ready") })
	inbox := filepath.Join(root, "state", "inbox", "b")
	cert := leaf.CertPEM()
	os.WriteFile(filepath.Join(inbox, "cluster.crt"), ca.CertPEM(), 0o600)
	os.WriteFile(filepath.Join(inbox, "node.key"), leaf.KeyPEM(t), 0o600)
	os.WriteFile(filepath.Join(inbox, "node.crt"), cert[:len(cert)/2], 0o600)
	eventually(t, "the wait", func() bool { return strings.Contains(log.String(), "inbox set incomplete; waiting for more files") })
	if strings.Contains(log.String(), "delivery refused") {
		t.Errorf("a set still being written was refused:\n%s", log)
	}
	os.WriteFile(filepath.Join(inbox, "node.crt"), cert, 0o600)
	eventually(t, "the install", func() bool { return strings.Contains(log.String(), "msg=installed") })
}
