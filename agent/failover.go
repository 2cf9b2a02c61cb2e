package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/certkeeper/certkeeper/rotate"
)

// Failover is the Source of a node with several admin hosts ([[source]]):
// each Fetch tries them in config order, the first (the primary) first,
// and remembers which answered, for status and the log. An error is
// returned only when all failed, naming each.
//
// The order is the config's at every fetch, not "the one that answered
// last first": a standby that holds a copy of the CA directory signs CSRs
// into its own copy of the database, which the next copy from the primary
// overwrites. Going back to the primary as soon as it answers keeps the
// standby's share of the signing to the outage itself (docs/admin-host.md
// §10). The price is one failed connection per fetch while the primary is
// down: refused at once for a host whose sshd is gone, the source's
// timeout for one that does not answer; fetches come hourly at most
// outside a renewal.
type Failover struct {
	Sources []Source

	mu       sync.Mutex
	answered int // index of the source that answered last
	// Log, when set, hears of each failover and of each return to the
	// first source.
	Log *slog.Logger
}

// FailoverOrder is the order a Fetch tries n sources in: the config's.
func FailoverOrder(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// FailoverEvent is what the log says of a fetch (FailoverNews).
type FailoverEvent int

const (
	// NoFailoverNews: the first source answered, as the fetch before.
	NoFailoverNews FailoverEvent = iota
	// FailedOver: a standby answered, the sources before it failed.
	FailedOver
	// FailedBack: the first answered after a standby had.
	FailedBack
)

// FailoverNews says what the log should say of a fetch that source i (of
// n) answered, after source prev answered the one before: a warning at
// every fetch a standby answers (the sources before it failed, and the log
// says how, each time: the admin needs to know the primary is down), a
// note when the first answers again after a standby did, else nothing.
func FailoverNews(n, prev, i int) FailoverEvent {
	switch {
	case n < 2:
		return NoFailoverNews
	case i > 0:
		return FailedOver
	case prev > 0:
		return FailedBack
	}
	return NoFailoverNews
}

// Fetch implements Source.
func (f *Failover) Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error) {
	var errs []error
	for _, i := range FailoverOrder(len(f.Sources)) {
		if ctx.Err() != nil {
			break
		}
		in, err := f.Sources[i].Fetch(ctx, b)
		if err == nil {
			f.mu.Lock()
			prev := f.answered
			f.answered = i
			f.mu.Unlock()
			if f.Log != nil {
				switch FailoverNews(len(f.Sources), prev, i) {
				case FailedOver:
					f.Log.Warn("source failover: another admin host answered", "bundle", b.Name, "answered", fetchedFrom(f, b, false), "failed", errors.Join(errs...))
				case FailedBack:
					f.Log.Info("source failback: the first admin host answers again", "bundle", b.Name, "answered", fetchedFrom(f, b, false))
				}
			}
			return in, nil
		}
		// Fetch itself said what failed on which host.
		errs = append(errs, err)
		if isDefinite(err) {
			// The host answered, and said no (nothing to fetch yet):
			// another one would not know better.
			break
		}
	}
	if len(f.Sources) == 1 && len(errs) == 1 {
		return nil, errs[0] // one admin host: its error says it all
	}
	return nil, fmt.Errorf("every admin host failed (%d sources): %w", len(f.Sources), errors.Join(errs...))
}

// isDefinite reports errors that are about the bundle, not the host.
func isDefinite(err error) bool { return errors.Is(err, ErrNoFirstBundle) }

// Answered names the source that answered the last successful Fetch.
func (f *Failover) Answered(b *Bundle) string { return fetchedFrom(f, b, false) }

// Describe names the source that answered last, and how many there are.
func (f *Failover) Describe(b *Bundle) string { return fetchedFrom(f, b, false) }

// Installed passes the news on to the sources that hold something until
// what they fetched is live (CSR mode's pending key).
func (f *Failover) Installed(b *Bundle) {
	for _, s := range f.Sources {
		if n, ok := s.(installedNotifier); ok {
			n.Installed(b)
		}
	}
}

// NewPullFailover returns the pull sources of every [[source]], in order
// (`certkeeper pull`).
func NewPullFailover(cfg *Config) (*Failover, []*SFTPSource, error) {
	if len(cfg.Sources) == 0 {
		return nil, nil, fmt.Errorf("config %s has no [source] section: add the admin host's address, user, identity_file and known_hosts to pull from it", cfg.Path)
	}
	f := &Failover{}
	var each []*SFTPSource
	for i := range cfg.Sources {
		s := newSFTPSource(&cfg.Sources[i])
		each = append(each, s)
		f.Sources = append(f.Sources, s)
	}
	return f, each, nil
}

// Pull fetches a bundle from the first source that answers and installs
// it with InstallPulled.
func (f *Failover) Pull(ctx context.Context, b *Bundle, log *slog.Logger) (Outcome, error) {
	in, err := f.Fetch(ctx, b)
	if err != nil {
		return Outcome{Bundle: b.Name}, err
	}
	return InstallPulled(ctx, b, in, sourceName(f, b), log)
}
