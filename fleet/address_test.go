package fleet_test

import (
	"context"
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
)

// fleet status names a node's SSH address as push does, with its port:
// three nodes behind one address on ports 22301..22303 must not all read
// "127.0.0.1" in --json.
func TestCollectKeepsTheSSHPort(t *testing.T) {
	nodes := []distribute.Node{
		{ID: "a", SSH: distribute.Target{Address: "127.0.0.1", Port: 22301}},
		{ID: "b", SSH: distribute.Target{Address: "node2.example.com"}},
		{ID: "c", SSH: distribute.Target{Address: "::1", Port: 2222}},
	}
	got := fleet.Collect(context.Background(), nodes, fleet.CollectOptions{Fetch: func(context.Context, distribute.Node) ([]byte, error) {
		return nil, nil
	}})
	want := []string{"127.0.0.1:22301", "node2.example.com:22", "[::1]:2222"}
	for i, f := range got {
		if f.Address != want[i] {
			t.Errorf("node %s: address %q, want %q (push's spelling)", f.ID, f.Address, want[i])
		}
	}
}
