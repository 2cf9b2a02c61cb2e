package distribute_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// FetchHostKeys asks each address once, even when several nodes share it,
// keeps the inventory's order, and PinNew pins only what is new.
func TestFetchHostKeysAndPinNew(t *testing.T) {
	a := testsshd.Start(t, testsshd.Options{})
	b := testsshd.Start(t, testsshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	node := func(id string, s *testsshd.Server) distribute.Node {
		tg := target(s)
		tg.KnownHosts = kh
		return distribute.Node{ID: id, SSH: tg}
	}
	nodes := []distribute.Node{node("a1", a), node("b", b), node("a2", a)}
	keys := distribute.FetchHostKeys(context.Background(), nodes, 8, 10*time.Second)
	if len(keys) != 2 || len(keys[0].IDs) != 2 || keys[0].IDs[1] != "a2" || keys[1].IDs[0] != "b" {
		t.Fatalf("hosts: %+v", keys)
	}
	for i, s := range []*testsshd.Server{a, b} {
		if keys[i].Err != nil || keys[i].State != distribute.Unpinned || ssh.FingerprintSHA256(keys[i].Key) != ssh.FingerprintSHA256(s.HostKeys[0].Public) {
			t.Fatalf("host %d: %+v", i, keys[i])
		}
	}
	if errs := distribute.PinNew(keys); errs != nil {
		t.Fatal(errs)
	}
	for _, h := range distribute.FetchHostKeys(context.Background(), nodes, 1, 10*time.Second) {
		if h.Err != nil || h.State != distribute.Pinned {
			t.Errorf("after PinNew: %+v", h)
		}
	}
}
