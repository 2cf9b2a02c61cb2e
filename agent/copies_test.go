package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// lockedBuffer is a log the agent writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// soon waits, bounded, for ok.
func soon(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The node flow with copies instead of links (Windows without the
// privilege to make links; Wine 8), on any system: the agent installs a
// bundle dropped into its inbox, restores a deleted key and an
// overwritten certificate from the live generation, says in its log that
// the live files are copies, and status says so too.
func TestAgentWithCopiesInstallsFromTheInboxAndRepairsDrift(t *testing.T) {
	root := t.TempDir()
	live, state := filepath.Join(root, "live"), filepath.Join(root, "state")
	cfgPath := filepath.Join(root, "c.toml")
	testpki.WriteFile(t, root, "c.toml", []byte(fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
link_mode = "copy"
`, state, live)), 0o600)
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(365 * 24 * time.Hour)})
	leaf := ca.Issue(t, "node-1", testpki.Options{})

	log := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, cfgPath, agent.Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("the agent did not stop")
		}
	}()

	inbox := filepath.Join(state, "inbox", "b")
	soon(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
	key := leaf.KeyPEM(t)
	testpki.WriteFile(t, inbox, "8eab.crt", leaf.CertPEM(), 0o644)
	testpki.WriteFile(t, inbox, "8eab.key", key, 0o600)
	testpki.WriteFile(t, inbox, "ca.crt", ca.CertPEM(), 0o644)
	holds := func(name string, want []byte) func() bool {
		return func() bool {
			b, err := os.ReadFile(filepath.Join(live, name))
			return err == nil && bytes.Equal(b, want)
		}
	}
	// The key's copy is placed before ..data names the new generation (the
	// swap's last step): wait for both.
	soon(t, "the dropped bundle installed", func() bool {
		fi, err := os.Lstat(filepath.Join(live, "..data"))
		return holds("node.key", key)() && err == nil && fi.Mode().IsRegular()
	})
	for _, n := range []string{"node.crt", "node.key", "cluster.crt", "..data"} {
		if fi, err := os.Lstat(filepath.Join(live, n)); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v, %v; want a regular file", n, fi, err)
		}
	}
	if !strings.Contains(log.String(), "link_mode=copy") {
		t.Errorf("the log does not say the live files are copies:\n%s", log)
	}

	if err := os.Remove(filepath.Join(live, "node.key")); err != nil {
		t.Fatal(err)
	}
	soon(t, "the deleted key restored", holds("node.key", key))
	if err := os.WriteFile(filepath.Join(live, "node.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	soon(t, "the overwritten certificate restored", holds("node.crt", leaf.CertPEM()))
	soon(t, "the repairs in the log", func() bool { return strings.Count(log.String(), "repaired drift") >= 2 })

	cfg, err := agent.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	st := rotate.NewManager(cfg.Bundles[0].Spec()).Status()
	if st.LinkMode != rotate.LinkCopy || !strings.Contains(st.LinkModeWhy, `link_mode = "copy"`) || st.Health != rotate.OK {
		t.Fatalf("status: link_mode %q (%q), %s %s", st.LinkMode, st.LinkModeWhy, st.Health, st.HealthText)
	}
}
