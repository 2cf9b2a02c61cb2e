//go:build unix

package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// The metrics textfile's directory, made by the agent, is listable by
// node_exporter (0755); the state directory is passable, not listable
// (0711).
func TestTheAgentMakesItsDirectoriesWithTheirModes(t *testing.T) {
	f := newFixture(t)
	textfile := filepath.Join(f.root, "textfile", "certkeeper.prom")
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte("state_dir"), []byte(fmt.Sprintf("metrics_textfile = %q\nstate_dir", textfile)), 1), 0o600)
	stop, _ := run(t, f, agent.Options{})
	eventually(t, "the textfile", func() bool { _, err := os.Stat(textfile); return err == nil })
	stop()
	for dir, want := range map[string]os.FileMode{filepath.Dir(textfile): 0o755, filepath.Join(f.root, "state"): 0o711} {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", dir, fi.Mode().Perm(), err, want)
		}
	}
}

// The agent (a failed check) and an admin's certkeeper rollback may add to
// the refused list at the same moment: every certificate refused stays
// refused.
func TestConcurrentRefusalsAreAllKept(t *testing.T) {
	f := newFixture(t)
	cfg, err := agent.LoadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	b := &cfg.Bundles[0]
	var certs []*testpki.Pair
	for range 8 {
		certs = append(certs, f.ca.Issue(t, "node-1", testpki.Options{}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(certs))
	for _, c := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- agent.RefuseLeaf(b, c.Cert, "test", time.Now())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(f.root, "state", "refused", "b"))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range certs {
		if !strings.Contains(string(data), pki.Fingerprint(c.Cert)) {
			t.Errorf("certificate %d is missing from the refused list:\n%s", i, data)
		}
	}
}
