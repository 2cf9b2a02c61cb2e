package distribute_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
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

// Pin makes the known_hosts file's missing directories: a first trust on
// a fresh admin host failed after the admin typed "yes" (found by running
// the binary).
func TestPinMakesTheKnownHostsDirectory(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "etc", "certkeeper", "known_hosts")
	if err := distribute.Pin(kh, "[127.0.0.1]:2222", signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if state, _, err := distribute.CheckPin(kh, "[127.0.0.1]:2222", signer.PublicKey()); err != nil || state != distribute.Pinned {
		t.Fatalf("after Pin: %v %v", state, err)
	}
}
