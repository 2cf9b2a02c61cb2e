//go:build unix

package agent_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/internal/tomlcap"
)

// The config path made a FIFO, then SIGHUP: the reload fails at once
// naming the FIFO, the watchdog keeps being fed, and SIGTERM still stops
// the agent. Before, the open blocked the main loop forever.
func TestSIGHUPWithTheConfigAFIFODoesNotBlock(t *testing.T) {
	f := newFixture(t)
	f.install(t, f.ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}))
	var n notes
	hup := make(chan struct{}, 1)
	stop, log := run(t, f, agent.Options{Notify: n.add, WatchdogInterval: 20 * time.Millisecond, Hangup: hup})
	eventually(t, "READY=1", func() bool { return slices.Contains(n.all(), "READY=1") })
	if err := os.Rename(f.config, f.config+".away"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(f.config, 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- struct{}{}
	eventually(t, "the reload to fail naming the FIFO", func() bool {
		return strings.Contains(log.String(), "config reload failed") && strings.Contains(log.String(), "a FIFO")
	})
	eventually(t, "a watchdog keep-alive after the failed reload", func() bool {
		a := n.all()
		i := slices.Index(a, "RELOADING=1")
		return i >= 0 && slices.Contains(a[i:], "WATCHDOG=1")
	})
	stop() // fails the test if Run does not return
}

// The issue's configs: nested inline tables of 7 to 62 KiB took 193 MiB
// to out of memory. Each is refused by the depth scan, naming the file
// and the limit, at a cost of almost nothing; so is a config over the
// size limit.
func TestHostileConfigsAreRefusedBeforeParsing(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{7 << 10, 15 << 10, 31 << 10, 62 << 10} {
		depth := size / 8
		data := "node_id = \"n\"\nx = " + strings.Repeat("{a=", depth) + "1" + strings.Repeat("}", depth) + "\n"
		p := filepath.Join(dir, "deep.toml")
		os.WriteFile(p, []byte(data), 0o600)
		var err error
		start := time.Now()
		alloc := tomlcap.Alloc(func() { _, err = agent.LoadConfig(p) })
		if err == nil || !strings.Contains(err.Error(), p+":2: keys or tables nested deeper than the limit of 6 levels") {
			t.Fatalf("%d KiB: %v", size>>10, err)
		}
		if alloc > 1<<20 || time.Since(start) > time.Second {
			t.Fatalf("%d KiB: refusing cost %d KiB, %v", size>>10, alloc>>10, time.Since(start))
		}
	}
	big := filepath.Join(dir, "big.toml")
	os.WriteFile(big, []byte(strings.Repeat("# a comment\n", 12000)), 0o600)
	if _, err := agent.LoadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than the 128 KiB limit for config files") {
		t.Fatalf("big config: %v", err)
	}
}
