package distribute

import (
	"context"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// HostKey is what FetchHostKeys learnt of one host of an inventory.
type HostKey struct {
	// IDs are the inventory's nodes at this address and known_hosts file
	// (usually one).
	IDs        []string
	HostPort   string
	KnownHosts string
	Key        ssh.PublicKey // nil when Err is set
	State      PinState
	// Pinned is what known_hosts holds instead, when State is Changed.
	Pinned []xknownhosts.KnownKey
	Err    error
}

// FetchHostKeys connects to every node's SSH address, at most concurrency
// at once, takes the host key each presents (logging in nowhere) and
// compares it with the node's known_hosts. Nodes sharing an address and a
// known_hosts file are asked once. The result is in inventory order.
func FetchHostKeys(ctx context.Context, nodes []Node, concurrency int, timeout time.Duration) []HostKey {
	type hostKnown struct{ hp, kh string }
	var out []HostKey
	index := map[hostKnown]int{}
	for _, n := range nodes {
		hp, err := n.SSH.HostPort()
		k := hostKnown{hp, n.SSH.KnownHosts}
		if i, ok := index[k]; ok && err == nil {
			out[i].IDs = append(out[i].IDs, n.ID)
			continue
		}
		index[k] = len(out)
		out = append(out, HostKey{IDs: []string{n.ID}, HostPort: hp, KnownHosts: n.SSH.KnownHosts, Err: err})
	}
	if concurrency < 1 {
		concurrency = DefaultConcurrency
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range out {
		if out[i].Err != nil {
			continue
		}
		wg.Add(1)
		go func(h *HostKey) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				h.Err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			_, key, err := FetchHostKey(ctx, h.HostPort, 22, h.KnownHosts, timeout)
			if err != nil {
				h.Err = err
				return
			}
			h.Key = key
			h.State, h.Pinned, h.Err = CheckPin(h.KnownHosts, h.HostPort, key)
		}(&out[i])
	}
	wg.Wait()
	return out
}

// PinNew pins every host whose key is not pinned yet, one known_hosts
// append at a time, and returns the errors by host (nil when all pinned).
// Changed and failed hosts are left alone: replacing a pin is for a person
// (ssh-keygen -R).
func PinNew(keys []HostKey) map[string]error {
	errs := map[string]error{}
	for _, h := range keys {
		if h.Err != nil || h.State != Unpinned {
			continue
		}
		if err := Pin(h.KnownHosts, h.HostPort, h.Key); err != nil {
			errs[h.HostPort] = err
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}
