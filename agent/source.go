package agent

import (
	"context"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// A Source brings candidate files for a bundle from outside the node: a
// pull over SFTP (SFTPSource) or a CSR exchange with the admin host
// (CSRSource).
type Source interface {
	Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error)
}

// installedNotifier is a Source that holds something until what it fetched
// is live: CSR mode's pending key, deleted once its certificate is
// installed.
type installedNotifier interface {
	Installed(b *Bundle)
}

// sourceName is how an install from a source is recorded in the log and
// the generation: the source's own description, after its mode
// ("pull: sftp://node-8eab@admin:22/nodes/8eab…", "csr: ssh://…").
func sourceName(src Source, b *Bundle) string {
	switch s := src.(type) {
	case *SFTPSource:
		return "pull: " + s.Describe(b)
	case *CSRSource:
		return "csr: " + s.Describe(b)
	case interface{ Describe(*Bundle) string }:
		return s.Describe(b)
	}
	return "source"
}

// fetchedFrom is sourceName for one fetch: a CSR bundle with nothing
// installed gets its first bundle from the node's pull account (CSRSource
// hands the fetch to Pull), and the record says so rather than naming the
// CA account that signed nothing.
func fetchedFrom(src Source, b *Bundle, nothingInstalled bool) string {
	if s, ok := src.(*CSRSource); ok && nothingInstalled && s.Pull != nil {
		return sourceName(s.Pull, b)
	}
	return sourceName(src, b)
}

// Retry timing of a Source. A real certificate's schedule is the one of the
// constants; a short-lived one (minutes or seconds, as in tests) scales
// them down with the time it has left (RetryBounds), or a retry an hour
// away would come after the certificate expired.
const (
	// BackoffBase is the wait after the first failure (the admin host
	// unreachable, a refused request).
	BackoffBase = 10 * time.Second
	// NothingNewerBase is the wait after the first fetch in the renewal
	// window that brought nothing newer than the live certificate: the
	// admin host is up but has not re-issued yet, which its timer fixes
	// within the hour, so there is no point asking often.
	NothingNewerBase = 5 * time.Minute
	// BackoffCap bounds every wait: a node whose admin host was down for a
	// day tries again within the hour after it is back.
	BackoffCap = time.Hour
	// MinRetry is the shortest wait, however short the certificate.
	MinRetry = time.Second
)

// RetryBounds scales a retry schedule (its base and its cap) to a
// certificate with left of its life of life remaining: neither may exceed a
// tenth of the horizon, which is the time left, but never less than a tenth
// of the lifetime (an expiring or expired certificate keeps a sensible
// pace instead of retrying every second), and neither goes below MinRetry.
// A 90-day certificate keeps the full schedule to the end; a 30-second one
// in its window retries about every second. life <= 0 (nothing installed)
// leaves the schedule as it is.
func RetryBounds(base, limit, left, life time.Duration) (time.Duration, time.Duration) {
	if life <= 0 {
		return base, limit
	}
	horizon := max(left, life/10)
	limit = min(limit, max(horizon/10, MinRetry))
	return min(base, limit), limit
}

// Backoff is how long to wait after the failures-th failure in a row, for
// a certificate with left of its lifetime life remaining (zeros when none
// is installed): BackoffBase doubled for each earlier failure, capped at
// BackoffCap, both scaled by RetryBounds, then "equal jitter" (between
// half and all of it) so that nodes that failed together do not retry
// together. jitter is in [0,1).
func Backoff(failures int, jitter float64, left, life time.Duration) time.Duration {
	base, limit := RetryBounds(BackoffBase, BackoffCap, left, life)
	return expBackoff(failures, jitter, base, limit)
}

// NothingNewerDelay is Backoff's gentler sibling for a source that answers
// but has nothing newer while the renewal is due: NothingNewerBase
// doubling to BackoffCap (5, 10, 20, 40, 60, 60… minutes for a real
// certificate), scaled and jittered the same way.
func NothingNewerDelay(tries int, jitter float64, left, life time.Duration) time.Duration {
	base, limit := RetryBounds(NothingNewerBase, BackoffCap, left, life)
	return expBackoff(tries, jitter, base, limit)
}

func expBackoff(n int, jitter float64, base, limit time.Duration) time.Duration {
	if n < 1 {
		return 0
	}
	d := limit
	if n <= 30 {
		if x := base << (n - 1); x > 0 && x < limit {
			d = x
		}
	}
	jitter = clamp01(jitter)
	return d/2 + time.Duration(float64(d/2)*jitter)
}

func clamp01(j float64) float64 {
	switch {
	case j < 0:
		return 0
	case j >= 1:
		return 0.999999
	}
	return j
}

// FetchState is what the agent remembers of a bundle's Source.
type FetchState struct {
	// Started is when the agent began looking after the bundle.
	Started time.Time `json:"-"`
	// LastAttempt and LastSuccess are when a call of Fetch last ended, and
	// last ended without error: a retry waits from the end of the attempt,
	// so a slow failure does not eat its backoff.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Failures counts failed attempts since the last success.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// NothingNewer counts fetches in a row, while the renewal was due, that
	// succeeded but brought nothing newer than the live certificate (the
	// admin host has not re-issued yet). It is not success: the agent keeps
	// asking, with NothingNewerDelay.
	NothingNewer int `json:"nothing_newer,omitempty"`
	// LastResult says what the last successful fetch did ("installed
	// ..gen-000004", "unchanged", "nothing newer: …").
	LastResult string `json:"last_result,omitempty"`
	// Answered names the source (of [[source]], by its address) that
	// answered the last successful fetch; with several sources, a
	// failover shows here.
	Answered string `json:"answered,omitempty"`
	// Jitter is drawn anew after each attempt, in [0,1).
	Jitter float64 `json:"-"`
	// NextTry is when the agent calls Fetch next; zero when nothing is
	// planned (a CSR bundle outside its renewal window with no window
	// known).
	NextTry time.Time `json:"next_try,omitzero"`
}

// FetchOutcome is how a call of the Source ended, as the schedule sees it.
type FetchOutcome int

const (
	// FetchFailed: the source could not be reached, refused, or what it
	// brought did not validate.
	FetchFailed FetchOutcome = iota
	// FetchRenewed: a certificate newer than the live one is installed.
	FetchRenewed
	// FetchNothingNewer: the source answered, but the live certificate is
	// still the newest (identical content, an older leaf, nothing
	// offered). Inside the renewal window that is not success.
	FetchNothingNewer
)

// Record updates the state after a call of the Source that ended at now.
// due is whether the renewal is due then; detail is the error
// (FetchFailed) or what happened; jitter is a fresh draw in [0,1).
func (f *FetchState) Record(now time.Time, o FetchOutcome, due bool, detail string, jitter float64) {
	f.LastAttempt, f.Jitter = now, jitter
	if o == FetchFailed {
		f.Failures++
		f.LastError = detail
		return
	}
	f.Failures, f.LastError, f.LastSuccess, f.LastResult = 0, "", now, detail
	if o == FetchNothingNewer && due {
		f.NothingNewer++
	} else {
		f.NothingNewer = 0
	}
}

// FetchPlan is what NextFetch needs to know of the bundle's certificate
// and mode.
type FetchPlan struct {
	// RenewAt is when the renewal window opens; zero when unknown. With
	// nothing (valid) installed the agent passes Started, and Due.
	RenewAt time.Time
	// Due: the window is open, or the certificate has expired, or nothing
	// valid is installed.
	Due bool
	// Left and Life of the live certificate scale the retry delays
	// (RetryBounds); zero when none is installed.
	Left, Life time.Duration
	// Interval is [source] pull_interval.
	Interval time.Duration
	// Periodic: also ask every Interval outside the renewal window. Pull
	// mode does (the admin host re-issues on its own timer, and a renewed
	// bundle is taken whenever it is there); CSR mode does not, since every
	// request makes a new certificate.
	Periodic bool
}

// NextFetch decides when to call a bundle's Source next:
//   - after a failure, Backoff later;
//   - while due, after fetches that brought nothing newer, NothingNewerDelay
//     later;
//   - when the bundle enters its renewal window and has not been fetched
//     since, at once;
//   - in pull mode, otherwise every Interval, ±10% by jitter; the first
//     time (no earlier run's schedule to continue) at a point of the
//     first Interval chosen by jitter, so a fleet started together spreads
//     its calls over the hour; nothing installed counts as due, and is
//     fetched at once;
//   - in CSR mode, otherwise not before the window opens.
func NextFetch(f FetchState, p FetchPlan) time.Time {
	j := clamp01(f.Jitter)
	switch {
	case f.Failures > 0:
		return f.LastAttempt.Add(Backoff(f.Failures, j, p.Left, p.Life))
	case p.Due && f.NothingNewer > 0:
		return f.LastAttempt.Add(NothingNewerDelay(f.NothingNewer, j, p.Left, p.Life))
	}
	enters := !p.RenewAt.IsZero() && f.LastAttempt.Before(p.RenewAt)
	if !p.Periodic {
		switch {
		case enters:
			return p.RenewAt
		case p.Due:
			// Fetched in the window without a failure and without
			// "nothing newer", yet still due: only a bundle that changed
			// under the agent gets here. Ask again, gently.
			return f.LastAttempt.Add(NothingNewerDelay(1, j, p.Left, p.Life))
		}
		return time.Time{}
	}
	var t time.Time
	if f.LastAttempt.IsZero() {
		t = f.Started.Add(time.Duration(float64(p.Interval) * j))
	} else {
		t = f.LastAttempt.Add(time.Duration(float64(p.Interval) * (0.9 + 0.2*j)))
	}
	if enters && p.RenewAt.Before(t) {
		t = p.RenewAt
	}
	return t
}
