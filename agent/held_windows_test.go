package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The reload helper: the test binary, run as the bundle's reload command
// with CERTKEEPER_HELD_RELOAD_LOG set, appends one line saying what the
// daemon would read now (the live certificate's and key's hashes).
func init() {
	logPath := os.Getenv("CERTKEEPER_HELD_RELOAD_LOG")
	if logPath == "" {
		return
	}
	dir := os.Getenv("CERTKEEPER_HELD_RELOAD_DIR")
	var line []string
	for _, n := range []string{"node.crt", "node.key"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		line = append(line, shortHash(b))
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		_, err = fmt.Fprintln(f, strings.Join(line, " "))
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func shortHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

// holdKey opens path as many Windows daemons open their key: share mode
// FILE_SHARE_READ only, so no rename may replace it while it is open.
func holdKey(t *testing.T, path string) func() {
	t.Helper()
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ, syscall.FILE_SHARE_READ, nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	closed := false
	release := func() {
		if !closed {
			closed = true
			_ = syscall.CloseHandle(h)
		}
	}
	t.Cleanup(release)
	return release
}

// The agent meets a key its daemon holds open past the swap's retries: it
// says which file and what to do, leaves the swap journaled, status says
// the bundle is mid-swap, and the reload stays owed without running
// against the torn set. Once the handle is closed, the agent's next
// repair finishes the swap and the owed reload runs once, on the whole
// new set.
func TestAgentFinishesASwapAHeldKeyStoppedAndReloadsOnce(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	live, state := filepath.Join(root, "live"), filepath.Join(root, "state")
	reloads := filepath.Join(root, "reloads.log")
	t.Setenv("CERTKEEPER_HELD_RELOAD_LOG", reloads)
	t.Setenv("CERTKEEPER_HELD_RELOAD_DIR", live)
	cfgPath := filepath.Join(root, "c.toml")
	testpki.WriteFile(t, root, "c.toml", []byte(fmt.Sprintf(`node_id = "node-1"
state_dir = %q
rescan_interval = "1s"

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
link_mode = "copy"

  [[bundle.reload]]
  command = [%q, "-test.run=^$"]
`, state, live, exe)), 0o600)
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(365 * 24 * time.Hour)})
	leafA := ca.Issue(t, "node-1", testpki.Options{})
	leafB := ca.Issue(t, "node-1", testpki.Options{})
	keyA, keyB := leafA.KeyPEM(t), leafB.KeyPEM(t)

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
	reloadLines := func() []string {
		b, _ := os.ReadFile(reloads)
		return strings.Fields(strings.ReplaceAll(string(b), " ", "/"))
	}
	holds := func(name string, want []byte) func() bool {
		return func() bool {
			b, err := os.ReadFile(filepath.Join(live, name))
			return err == nil && bytes.Equal(b, want)
		}
	}
	inbox := filepath.Join(state, "inbox", "b")
	drop := func(leaf *testpki.Pair, key []byte) {
		testpki.WriteFile(t, inbox, "node.crt", leaf.CertPEM(), 0o644)
		testpki.WriteFile(t, inbox, "node.key", key, 0o600)
		testpki.WriteFile(t, inbox, "ca.crt", ca.CertPEM(), 0o644)
	}
	soon(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
	drop(leafA, keyA)
	soon(t, "A installed and reloaded", func() bool { return holds("node.key", keyA)() && len(reloadLines()) == 1 })

	// Windows refuses to open a name the agent still has open (it reads
	// and removes A's set): B is dropped once the inbox is empty.
	soon(t, "A's files taken from the inbox", func() bool {
		ents, err := os.ReadDir(inbox)
		for _, e := range ents {
			if !e.IsDir() {
				return false
			}
		}
		return err == nil
	})
	key := filepath.Join(live, "node.key")
	release := holdKey(t, key)
	drop(leafB, keyB)
	soon(t, "the install of B stopped by the held key", func() bool {
		return strings.Contains(log.String(), "keeps "+strings.ReplaceAll(key, `\`, `\\`)+" open without sharing delete")
	})
	if _, err := os.Stat(filepath.Join(live, "..swap")); err != nil {
		t.Errorf("the swap journal is not there: %v", err)
	}
	cfg, err := agent.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b := &cfg.Bundles[0]
	st := rotate.NewManager(b.Spec()).Status()
	if st.Swapping == "" || st.Health != rotate.Critical || !strings.Contains(st.HealthText, "mid-swap") {
		t.Errorf("status mid-swap: swapping %q, %s: %s", st.Swapping, st.Health, st.HealthText)
	}
	o, step, err := agent.NewPipeline(b, slog.New(slog.DiscardHandler)).OwedNow()
	if err != nil || step != agent.OwedWait || o == nil || o.Generation != st.Swapping || !o.Reload {
		t.Errorf("owed while mid-swap: %+v, step %v, %v; want the reload of %s, waiting", o, step, err, st.Swapping)
	}
	// The agent tries again on its own (HeldRetry: after 1 s); still held.
	soon(t, "the repair meeting the held key", func() bool { return strings.Contains(log.String(), "cannot repair the live directory") })
	if n := len(reloadLines()); n != 1 {
		t.Fatalf("%d reloads while the swap was torn; want none since A's", n-1)
	}

	release()
	soon(t, "B live", func() bool { return holds("node.key", keyB)() && holds("node.crt", leafB.CertPEM())() })
	soon(t, "B's reload", func() bool { return len(reloadLines()) == 2 })
	want := shortHash(leafB.CertPEM()) + "/" + shortHash(keyB)
	if got := reloadLines()[1]; got != want {
		t.Errorf("the reload read %s; want B's certificate and key, %s", got, want)
	}
	soon(t, "the owed record paid", func() bool {
		o, _, err := agent.NewPipeline(b, slog.New(slog.DiscardHandler)).OwedNow()
		return err == nil && o == nil
	})
	if _, err := os.Stat(filepath.Join(live, "..swap")); err == nil {
		t.Error("the swap journal is still there")
	}
	if st := rotate.NewManager(b.Spec()).Status(); st.Swapping != "" || st.Health != rotate.OK {
		t.Errorf("status after the swap: swapping %q, %s: %s", st.Swapping, st.Health, st.HealthText)
	}
	if !strings.Contains(log.String(), "the swap a held live file stopped is complete") {
		t.Errorf("the log does not say the swap is complete:\n%s", log)
	}
	// Once: a rescan later, no second reload.
	time.Sleep(1500 * time.Millisecond)
	if n := len(reloadLines()); n != 2 {
		t.Errorf("%d reloads of B; want 1\n%s", n-1, log)
	}
}
