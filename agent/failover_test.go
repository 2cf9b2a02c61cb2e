//go:build unix

package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// The agent with two sources, the first down: its fetch in the renewal
// window fails over to the second, logs it, and the state says which
// answered.
func TestDaemonFailsOverToTheSecondSource(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	old := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	f.install(t, old)
	renewed := f.ca.Issue(t, "node-1", testpki.Options{NotAfter: now.Add(90 * 24 * time.Hour)})
	srcDir := t.TempDir()
	testpki.WriteFile(t, srcDir, "node.crt", renewed.CertPEM(), 0o644)
	testpki.WriteFile(t, srcDir, "node.key", renewed.KeyPEM(t), 0o600)
	down, up := &fakeSource{dir: srcDir, fail: 1 << 20}, &fakeSource{dir: srcDir}
	fo := &agent.Failover{Sources: []agent.Source{down, up}}
	stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return fo }})
	eventually(t, "the renewed certificate to be live", func() bool {
		b, _ := os.ReadFile(filepath.Join(f.live, "node.crt"))
		return bytes.Equal(b, renewed.CertPEM())
	})
	eventually(t, "the state to name the second source", func() bool {
		st, err := agent.ReadState(&agent.Config{StateDir: filepath.Join(f.root, "state")})
		return err == nil && st != nil && len(st.Bundles) == 1 && st.Bundles[0].Source != nil && strings.Contains(st.Bundles[0].Source.Answered, "(source 2 of 2)")
	})
	stop()
	if !strings.Contains(log.String(), "source failover: another admin host answered") || down.Calls() != 1 || up.Calls() != 1 {
		t.Fatalf("down %d calls, up %d calls; log:\n%s", down.Calls(), up.Calls(), log)
	}
}
