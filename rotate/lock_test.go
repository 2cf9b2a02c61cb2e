package rotate_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// Two installers of one bundle: the second one's decision waits for the
// first one's swap, so it is taken against the generation the first one
// made live, never against the one before it.
func TestTheDecisionAgainstTheLiveGenerationIsTakenUnderTheLock(t *testing.T) {
	testenv.NeedUnix(t, "the live directory's lock (platform.LockDir; on Windows one certkeeper service per machine, no lock)")
	if testLinkMode() == rotate.LinkSymlink {
		testenv.NeedSymlinks(t)
	}
	dir := t.TempDir() + "/live"
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	older := ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-2 * time.Hour)})
	newer := ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)})
	bundle := func(p *testpki.Pair) []rotate.Input {
		return []rotate.Input{{Name: "c", Data: p.CertPEM()}, {Name: "k", Data: p.KeyPEM(t)}, {Name: "ca", Data: ca.CertPEM()}}
	}
	m1, m2 := crashManager(dir), crashManager(dir)
	var second atomic.Bool
	done := make(chan error, 1)
	res, err := m1.Deliver(bundle(newer), "first", true, func(rotate.Generation) error {
		// Staged, not yet live: the other installer starts now, and must
		// not decide until this swap is done.
		go func() {
			_, err := m2.InstallNewer(bundle(older), "second")
			second.Store(true)
			done <- err
		}()
		time.Sleep(200 * time.Millisecond)
		if second.Load() {
			t.Error("the second installer decided while the first held the lock")
		}
		return nil
	})
	if err != nil || !res.Changed {
		t.Fatalf("first install: %+v %v", res, err)
	}
	select {
	case err := <-done:
		// Judged against the newer certificate now live: refused as older.
		if err == nil {
			t.Fatal("the older bundle was installed over the newer one: its decision was taken against a generation no longer live")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second installer never finished")
	}
	_, g, err := m1.Live()
	if err != nil || g.Name != res.Generation.Name {
		t.Fatalf("live is %s (%v), want %s", g.Name, err, res.Generation.Name)
	}
}
