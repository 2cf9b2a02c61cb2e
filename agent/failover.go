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
// each Fetch tries them in order, starting with the one that answered
// last, and remembers which answered. An error is returned only when all
// failed, naming each.
type Failover struct {
	Sources []Source

	mu       sync.Mutex
	answered int // index of the source that answered last
	// Log, when set, hears of each failover.
	Log *slog.Logger
}

// FailoverOrder is the order the next Fetch tries the sources in: the one that
// answered last, then the others in config order.
func FailoverOrder(n, answered int) []int {
	if answered < 0 || answered >= n {
		answered = 0
	}
	out := []int{answered}
	for i := range n {
		if i != answered {
			out = append(out, i)
		}
	}
	return out
}

// Fetch implements Source.
func (f *Failover) Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error) {
	f.mu.Lock()
	order := FailoverOrder(len(f.Sources), f.answered)
	f.mu.Unlock()
	var errs []error
	for k, i := range order {
		if ctx.Err() != nil {
			break
		}
		in, err := f.Sources[i].Fetch(ctx, b)
		if err == nil {
			f.mu.Lock()
			prev := f.answered
			f.answered = i
			f.mu.Unlock()
			if (k > 0 || prev != i) && f.Log != nil {
				f.Log.Warn("source failover: another admin host answered", "bundle", b.Name, "answered", sourceName(f.Sources[i], b), "failed", errors.Join(errs...))
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
