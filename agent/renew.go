package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// ErrNothingNewer is a renewal the admin host could not give: it answered,
// but has nothing newer than the live certificate (pull mode, before its
// `ca renew` ran).
var ErrNothingNewer = errors.New("the source has nothing newer than the live certificate")

// Renewal is what RenewNow did for one bundle.
type Renewal struct {
	Bundle string
	// NotDue: outside the renewal window and not forced; nothing was asked.
	NotDue bool
	// Plan is the live certificate's schedule (zero when none is live).
	Plan RenewalPlan
	// Source is where the new certificate came from.
	Source string
	// Outcome is the install and its reloads.
	Outcome Outcome
	// Leaf is the certificate now live.
	Leaf *x509.Certificate
}

// RenewNow is `certkeeper renew` for one bundle: unless force, a bundle
// outside its renewal window is left alone without calling the admin host;
// otherwise it asks src, the bundle's source in its mode
// (ConfiguredSource: pull fetches and installs if newer; csr makes a new
// key and has its request signed), installs, and reloads. The error names
// the host and the reason; ErrNothingNewer when the admin host answered
// with nothing newer. A failure leaves the live bundle as it was.
func RenewNow(ctx context.Context, cfg *Config, b *Bundle, src Source, force bool, now time.Time, log *slog.Logger) (Renewal, error) {
	r := Renewal{Bundle: b.Name}
	m := rotate.NewManager(b.Spec())
	live, _, err := m.Live()
	var leaf *x509.Certificate
	if err == nil && live != nil && live.Leaf != nil {
		leaf = live.Leaf
		r.Plan = PlanRenewal(now, leaf, b.Renewal(), rotate.JitterFor(leaf))
		if !r.Plan.Due && r.Plan.Err == nil && !force {
			r.NotDue, r.Leaf = true, leaf
			return r, nil
		}
	}
	if src == nil {
		return r, fmt.Errorf("bundle %q has no source to renew from: add a [source] section (the admin host) to %s, or drop a renewed bundle into the inbox %s", b.Name, cfg.Path, b.Inbox)
	}
	r.Source = sourceName(src, b)
	inputs, err := src.Fetch(ctx, b)
	if err != nil {
		return r, err
	}
	if _, ok := src.(*Failover); ok {
		// The source that answered, of several.
		r.Source = sourceName(src, b)
	}
	if len(inputs) == 0 {
		return r, fmt.Errorf("bundle %q: %s: %w (it offered nothing)", b.Name, r.Source, ErrNothingNewer)
	}
	out, err := InstallPulled(ctx, b, inputs, r.Source, log)
	r.Outcome = out
	if err != nil {
		if OlderThanLive(inputs, leaf) {
			return r, fmt.Errorf("bundle %q: %s: %w (it offers a certificate older than the live one); re-issue on the admin host first (certkeeper ca renew)", b.Name, r.Source, ErrNothingNewer)
		}
		return r, err
	}
	if nl := out.Result.Bundle.Leafish(); leaf != nil && pki.Fingerprint(nl) == pki.Fingerprint(leaf) {
		return r, fmt.Errorf("bundle %q: %s: %w (serial %s, expires %s); re-issue on the admin host first (certkeeper ca renew)",
			b.Name, r.Source, ErrNothingNewer, pki.Serial(leaf), leaf.NotAfter.UTC().Format(time.DateTime+" MST"))
	}
	r.Leaf = out.Result.Bundle.Leafish()
	if n, ok := src.(installedNotifier); ok {
		n.Installed(b)
	}
	return r, nil
}
