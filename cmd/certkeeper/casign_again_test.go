package main

import (
	"strings"
	"testing"
)

// A node whose install keeps failing sends its pending key's request
// again and again (hourly): the binary hands back the certificate it
// signed the first time, says so on stderr, and `ca list --all` shows one
// certificate for the key, not one per attempt.
func TestCASignTheSameKeyAgain(t *testing.T) {
	dir := newCADir(t)
	work := t.TempDir()
	req := csrPEM(t, work, "", "/CN=csr-1")
	var first string
	for i := 0; i < 3; i++ {
		r := certkeeperIn(t, req, "ca", "sign", "--dir", dir, "--node", "csr-1")
		if r.code != 0 || !strings.Contains(r.stdout, "BEGIN CERTIFICATE") {
			t.Fatalf("attempt %d: %+v", i+1, r)
		}
		if i == 0 {
			first = r.stdout
			if r.stderr != "" {
				t.Fatalf("first request: stderr %q", r.stderr)
			}
			continue
		}
		if r.stdout != first || !strings.Contains(r.stderr, "node csr-1: this key already has certificate ") || !strings.Contains(r.stderr, "handed back again, nothing new recorded") {
			t.Fatalf("attempt %d: not the first certificate handed back: stderr %q", i+1, r.stderr)
		}
	}
	n := 0
	for _, e := range list(t, dir, true) {
		if e.ID == "csr-1" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("ca list --all: %d certificates for csr-1 after three requests with one key, want 1", n)
	}
	// A new key (the node's next renewal) gets a new certificate.
	if r := certkeeperIn(t, csrPEM(t, work, "", "/CN=csr-1"), "ca", "sign", "--dir", dir, "--node", "csr-1"); r.code != 0 || r.stdout == first || r.stderr != "" {
		t.Fatalf("a new key: %+v", r)
	}
	if got := len(list(t, dir, true)); got != 2 {
		t.Fatalf("ca list --all: %d certificates, want 2", got)
	}
}
