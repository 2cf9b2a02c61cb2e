package agent

import (
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
)

// A CSR bundle's first bundle comes from the node's pull account, and its
// generation and log say so; renewals name the CA account.
func TestFetchedFrom(t *testing.T) {
	b := &Bundle{Name: "glow", NodeID: "node3"}
	pull := &SFTPSource{Target: distribute.Target{Address: "admin:22", User: "ck-node3"}}
	withPull := &CSRSource{Target: distribute.Target{Address: "admin:22", User: "certkeeper-ca"}, Pull: pull}
	alone := &CSRSource{Target: distribute.Target{Address: "admin:22", User: "certkeeper-ca"}}
	cases := []struct {
		src   Source
		first bool
		want  string
	}{
		{withPull, true, "pull: sftp://ck-node3@admin:22/nodes/node3"},
		{withPull, false, "csr: ssh://certkeeper-ca@admin:22 (ca sign)"},
		{alone, true, "csr: ssh://certkeeper-ca@admin:22 (ca sign)"},
		{pull, true, "pull: sftp://ck-node3@admin:22/nodes/node3"},
	}
	for _, c := range cases {
		if got := fetchedFrom(c.src, b, c.first); got != c.want {
			t.Errorf("fetchedFrom(%T, first=%v) = %q, want %q", c.src, c.first, got, c.want)
		}
	}
}
