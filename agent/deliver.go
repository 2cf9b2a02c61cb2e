package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// The delivery pipeline: every path into a live directory (the inbox, a
// pull, a CSR renewal, and the install, pull and renew commands) is one
// call of Pipeline.Install followed by Pipeline.Settle (Deliver does both):
//
//	refused list (automated deliveries) → classify → validate against the
//	live generation and swap, under the store's lock → owed record
//	(durable, before the swap) → log → reload → check → rollback on a
//	failed check → owed record cleared
//
// The loop calls the two halves apart, so its repairs go on while a
// reload or a check runs (Settle in a worker of the bundle's own); the
// commands call Deliver.

// Kind is where a delivery came from.
type Kind string

// Kinds of delivery.
const (
	// ByHand is `certkeeper install`: the admin's own choice, so it may
	// take the bundle back in time and is not held to the refused list.
	ByHand Kind = "install"
	// FromInbox, FromPull and FromCSR are automated: a leaf older than the
	// live one, or one on the refused list, is refused.
	FromInbox Kind = "inbox"
	FromPull  Kind = "pull"
	FromCSR   Kind = "csr"
)

// Delivery is one set of inputs offered to a bundle.
type Delivery struct {
	Kind   Kind
	Inputs []rotate.Input
	// From names where they came from, for the log and the generation's
	// record ("inbox: a.crt a.key", "pull: sftp://…").
	From string
}

func (d Delivery) automated() bool { return d.Kind != ByHand }

// RefusedError is an automated delivery of a certificate on the bundle's
// refused list.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// Outcome is what delivering to a bundle did.
type Outcome struct {
	Bundle string
	Kind   Kind
	From   string
	Result rotate.Result
	// Owed is what the live generation was still owed after the install
	// (nil: nothing); Settle runs it.
	Owed *Owed
	// Replayed: the files were already live, but their reload or check
	// was still owed (an agent killed before it ran) and ran now.
	Replayed bool
	Change
}

// Change is what followed an install that changed the live bundle: the
// reload actions, the bundle's check and, when the check failed, the
// rollback and its reloads.
type Change struct {
	// Generation is the generation the actions ran for.
	Generation string
	Reloads    []platform.ReloadResult
	// Check is the check command's run; nil when the bundle has none.
	Check *platform.ReloadResult
	// RolledBack: the check failed and From (the new generation) was
	// rolled back to To; RollbackReloads are the reloads after it.
	RolledBack      bool
	From, To        rotate.Generation
	RollbackReloads []platform.ReloadResult
	// ReloadsAt, CheckAt and RollbackAt are when the last reloads, the
	// check and the rollback's reloads ended (the pipeline's clock): the
	// state records an outcome at the time it was known, not when the
	// whole change (served checks included) was recorded.
	ReloadsAt, CheckAt, RollbackAt time.Time
	// RollbackErr is a rollback that was refused after a failed check:
	// the new bundle stayed live.
	RollbackErr error
	// OwedErr is an owed record that could not be written or cleared.
	OwedErr error
	// Served is the served check after the reload (bundle key served);
	// nil when none ran. ServedAfterRollback is the look after a
	// rollback's reloads.
	Served              *ServedOutcome
	ServedAfterRollback *ServedResult
}

// Ran reports whether anything ran.
func (c Change) Ran() bool {
	return c.Reloads != nil || c.Check != nil || c.RolledBack || c.RollbackReloads != nil
}

// CheckFailed returns the check's error, nil when it passed or there is
// none.
func (c Change) CheckFailed() error {
	if c.Check == nil {
		return nil
	}
	return c.Check.Err
}

// Err is the failed check as the error of an install, naming what was done
// about it; nil when the check passed or there is none.
func (c Change) Err(b *Bundle, installed rotate.Generation) error {
	err := c.CheckFailed()
	name := installed.Name
	if name == "" {
		name = c.Generation
	}
	if err == nil && c.Served != nil && c.Served.Step != ServedDone {
		err = c.Served.Last.Err
		if c.RolledBack {
			return fmt.Errorf("bundle %q: served check failed after installing %s and %d more reloads, rolled back to %s: %w", b.Name, name, c.Served.ExtraReloads, c.To.Name, err)
		}
		if c.RollbackErr == nil {
			return fmt.Errorf("bundle %q: served check after installing %s, after %d more reloads: %w (served_mismatch = %q: the new bundle stays live)",
				b.Name, name, c.Served.ExtraReloads, err, b.ServedMismatch)
		}
	}
	switch {
	case err == nil:
		return nil
	case c.RolledBack:
		return fmt.Errorf("bundle %q: check failed after installing %s, rolled back to %s: %w", b.Name, name, c.To.Name, err)
	default:
		return fmt.Errorf("bundle %q: check failed after installing %s, and the rollback was refused (%v), so the new bundle stays live: %w", b.Name, name, c.RollbackErr, err)
	}
}

// ReloadFailed reports whether any reload action failed.
func (o Outcome) ReloadFailed() error {
	var errs []error
	for _, r := range o.Reloads {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// Pipeline delivers to one bundle.
type Pipeline struct {
	B   *Bundle
	M   *rotate.Manager
	Log *slog.Logger
	Now func() time.Time
	// Command: a command runs the pipeline (install, pull, renew), not
	// the agent's loop. A reload that fails then stays owed: status and
	// check say so until it ran, and the agent (at its next rescan) or
	// the same install again runs it. The agent's loop records a failed
	// reload in its own state instead and does not retry it.
	Command bool
}

// NewPipeline returns the pipeline of a bundle, on the wall clock.
func NewPipeline(b *Bundle, log *slog.Logger) *Pipeline {
	return &Pipeline{B: b, M: rotate.NewManager(b.Spec()), Log: log, Now: time.Now, Command: true}
}

// Deliver runs inputs through the bundle's pipeline: Install, then Settle
// whatever the live generation is owed. The error is a refusal, a failed
// install, or a failed check (then rolled back, see Change.Err).
func Deliver(ctx context.Context, b *Bundle, d Delivery, log *slog.Logger) (Outcome, error) {
	return NewPipeline(b, log).Deliver(ctx, d)
}

// Deliver is Install then Settle, holding the bundle's settle lock from
// before the install to after its actions: an agent running beside the
// command does not run them a second time.
func (p *Pipeline) Deliver(ctx context.Context, d Delivery) (Outcome, error) {
	unlock, lerr := p.lockSettle()
	if lerr != nil {
		p.Log.Warn("cannot take the bundle's settle lock; an agent beside this command may reload too", "bundle", p.B.Name, "err", lerr)
	} else {
		defer unlock()
	}
	out, err := p.Install(d)
	if err != nil {
		return out, err
	}
	if out.Owed != nil {
		out.Change = p.settle(ctx)
		out.Replayed = !out.Result.Changed && out.Change.Ran()
		return out, out.Err(p.B, out.Result.Generation)
	}
	return out, nil
}

// MsgRefused is the message of the log line of a refused delivery (the
// log calls spell it out, for the troubleshooting page's check). The
// agent's log is where its refusals are read; a command returns the
// refusal as its error, and leaves the line out (it would say it twice).
const MsgRefused = "delivery refused; the live bundle is unchanged"

// Install is the first half of the pipeline: the refused list (for an
// automated delivery), validation against the live generation and the
// swap under the store's lock, with the owed record written before the
// swap. It logs what it did, the same line for every kind of delivery.
func (p *Pipeline) Install(d Delivery) (Outcome, error) {
	b, log := p.B, p.Log
	out := Outcome{Bundle: b.Name, Kind: d.Kind, From: d.From}
	if d.automated() {
		if err := checkRefused(b, d.Inputs); err != nil {
			log.Warn("delivery refused; the live bundle is unchanged", "bundle", b.Name, "kind", string(d.Kind), "source", d.From, "err", err)
			return out, fmt.Errorf("bundle %q: %w", b.Name, &RefusedError{Reason: err.Error()})
		}
	}
	res, err := p.M.Deliver(d.Inputs, d.From, d.automated(), func(g rotate.Generation) error {
		if err := oweChange(b, g, d.From, p.now()); err != nil {
			return fmt.Errorf("record the reload owed to %s before making it live: %w", g.Name, err)
		}
		return nil
	})
	out.Result = res
	if err != nil {
		var verr *rotate.ValidationError
		if errors.As(err, &verr) {
			log.Warn("delivery refused; the live bundle is unchanged", "bundle", b.Name, "kind", string(d.Kind), "source", d.From, "err", err)
		}
		return out, fmt.Errorf("bundle %q: %w", b.Name, err)
	}
	owed, oerr := ReadOwed(b)
	if oerr != nil {
		log.Error("cannot read the owed actions; running the reload and check again to be safe", "bundle", b.Name, "err", oerr)
	}
	if step, o := PlanOwed(owed, res.Generation.Name); step != OwedNothing {
		out.Owed = o
	}
	if !res.Changed {
		if out.Owed != nil {
			log.Warn("bundle unchanged, but its reload is owed from an earlier change; running it", "bundle", b.Name, "generation", res.Generation.Name,
				"source", d.From, "owed", out.Owed.String())
		} else {
			log.Info("bundle unchanged; no reload", "bundle", b.Name, "generation", res.Generation.Name, "source", d.From)
		}
		logRepaired(log, b, res.Repaired)
		return out, nil
	}
	log.Info("installed", "bundle", b.Name, "generation", res.Generation.Name, "dir", b.Resolved.Dir,
		"serial", pki.Serial(res.Bundle.Leafish()), "source", d.From, "kind", string(d.Kind))
	if out.Owed == nil && (len(b.Reload) > 0 || len(b.Check) > 0) {
		// No record (no state directory): run the actions all the same.
		out.Owed = &Owed{Generation: res.Generation.Name, Reload: len(b.Reload) > 0, Check: len(b.Check) > 0}
	}
	return out, nil
}

func (p *Pipeline) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// Owed returns what the live generation is owed, nil when nothing. A
// record that no longer applies (for a generation that never became
// live) is removed.
func (p *Pipeline) Owed() (*Owed, OwedStep, error) { return p.owed(true) }

// OwedNow is Owed without removing anything: for status and check, which
// change nothing.
func (p *Pipeline) OwedNow() (*Owed, OwedStep, error) { return p.owed(false) }

func (p *Pipeline) owed(drop bool) (*Owed, OwedStep, error) {
	o, err := ReadOwed(p.B)
	if err != nil || o == nil {
		return nil, OwedNothing, err
	}
	g, _, lerr := p.M.Store.Live()
	if lerr != nil && !errors.Is(lerr, rotate.ErrNoGeneration) {
		return nil, OwedNothing, lerr
	}
	// A copy-mode swap stopped by a held file: ..data still names the
	// generation it replaces, but the record is the new one's, and must
	// outlive the wait (PlanOwedSwapping).
	swapping, serr := p.M.Store.Swapping()
	if serr != nil {
		return nil, OwedNothing, serr
	}
	step, applies := PlanOwedSwapping(o, g.Name, swapping)
	if step == OwedNothing {
		// For a generation that never became live: nothing to do.
		if drop && swapping == "" {
			_ = dropOwed(p.B, o)
		}
		return nil, OwedNothing, nil
	}
	return applies, step, nil
}

// Settle runs whatever the live generation is still owed (see Owed): its
// reload actions, then its check; when the check fails, the new
// certificate goes on the refused list (a source must not bring it back),
// the previous generation is made live again, and the reload actions run
// again. Each finished part is recorded as paid before the next starts, so
// a kill during the check does not reload twice. Without a record, it
// runs nothing.
func (p *Pipeline) Settle(ctx context.Context) Change {
	unlock, err := p.lockSettle()
	if err != nil {
		p.Log.Warn("cannot take the bundle's settle lock; running what is owed without it", "bundle", p.B.Name, "err", err)
	} else {
		defer unlock()
	}
	return p.settle(ctx)
}

// lockSettle takes the lock that makes one settler at a time run what a
// bundle is owed (the agent's worker, a command): a directory of its own
// beside the owed record, held with platform.LockDir.
func (p *Pipeline) lockSettle() (func(), error) {
	if p.B.stateDir == "" || (len(p.B.Reload) == 0 && len(p.B.Check) == 0) {
		return func() {}, nil // nothing is ever owed
	}
	dir := filepath.Join(filepath.Dir(p.B.owedPath()), p.B.Name+".lock")
	if err := mkdirMode(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return platform.LockDir(dir)
}

func (p *Pipeline) settle(ctx context.Context) Change {
	b, log := p.B, p.Log
	var c Change
	o, step, err := p.Owed()
	if err != nil {
		log.Error("cannot read the owed actions", "bundle", b.Name, "err", err)
		c.OwedErr = err
		return c
	}
	if o == nil && b.stateDir == "" {
		// Without a state directory nothing is recorded; an install that
		// changed the bundle still owes its actions (Install said so).
		g, _, lerr := p.M.Store.Live()
		if lerr != nil {
			return c
		}
		o, step = &Owed{Generation: g.Name, Reload: len(b.Reload) > 0, Check: len(b.Check) > 0}, OwedRun
	}
	if o == nil {
		return c
	}
	if step == OwedWait {
		// The swap is not complete: reloading now would hand the daemon a
		// torn set. The record stays; the agent's next repair finishes the
		// swap, and the next settle runs it.
		log.Info("reload waits: the swap is not complete (a live file is held open)", "bundle", b.Name, "owed", o.String())
		return c
	}
	c.Generation = o.Generation
	if step == OwedRollback {
		log.Warn("a rollback after a failed check was interrupted; rolling back again", "bundle", b.Name, "from", o.RollbackFrom, "to", o.Generation)
		p.rollback(ctx, &c, "") // refused before the interrupted swap
		return c
	}
	if o.Reload {
		c.Reloads = RunReloads(ctx, b, log)
		c.ReloadsAt = p.now()
		if failed := (Outcome{Change: c}).ReloadFailed(); failed != nil && p.Command && o.RollbackFrom == "" {
			log.Warn("the reload stays owed; the agent runs it again at its next rescan", "bundle", b.Name, "generation", o.Generation, "err", failed)
		} else if err := paidOwed(b, o.Generation, true, false); err != nil {
			log.Error("cannot record the reload as done; it may run again", "bundle", b.Name, "err", err)
			c.OwedErr = err
		}
	}
	if o.RollbackFrom != "" {
		c.RolledBack = true
		c.RollbackReloads, c.Reloads = c.Reloads, nil
		c.RollbackAt, c.ReloadsAt = c.ReloadsAt, time.Time{}
		return c
	}
	if !o.Check || len(b.Check) == 0 {
		if o.Check {
			_ = paidOwed(b, o.Generation, false, true)
		}
		p.settleServed(ctx, &c, o.Reload)
		return c
	}
	cr := platform.RunReload(ctx, platform.ReloadAction{Command: b.Check, Timeout: b.CheckTimeout.Duration})
	c.Check, c.CheckAt = &cr, p.now()
	attrs := []any{"bundle", b.Name, "command", strings.Join(b.Check, " "), "exit", cr.ExitCode, "duration", cr.Duration.Round(time.Millisecond)}
	if cr.Output != "" {
		attrs = append(attrs, "output", cr.Output)
	}
	if cr.Err == nil {
		log.Info("check passed", attrs...)
		if err := paidOwed(b, o.Generation, false, true); err != nil {
			c.OwedErr = err
		}
		p.settleServed(ctx, &c, o.Reload)
		return c
	}
	log.Error("check failed after the install; rolling back", append(attrs, "err", cr.Err)...)
	p.rollback(ctx, &c, "its check failed after the install and it was rolled back")
	return c
}

// rollback makes the generation before the failed one live again, with
// the rollback's reloads owed until they ran. Unless reason is empty, what
// it rolls away from is put on the refused list first, under the store's
// lock (RefuseRolledAway: the leaf, or the exact set when the leaf is the
// same as the one it goes back to), so no source brings it straight back.
func (p *Pipeline) rollback(ctx context.Context, c *Change, reason string) {
	b, log := p.B, p.Log
	failed := c.Generation
	from, to, err := p.M.RollbackHook(false, func(from, to rotate.Generation) error {
		if reason != "" && from.Name == failed {
			if _, err := RefuseRolledAway(b, p.M, from, to, reason, p.now()); err != nil {
				log.Error("cannot record the certificate as refused; a source may offer it again", "bundle", b.Name, "err", err)
			}
		}
		return oweRollback(b, from, to, p.now())
	})
	if err != nil {
		log.Error("rollback refused; the new bundle stays live", "bundle", b.Name, "err", err)
		c.RollbackErr = err
		_ = paidOwed(b, failed, true, true)
		return
	}
	log.Warn("rolled back", "bundle", b.Name, "from", from.Name, "to", to.Name)
	c.RolledBack, c.From, c.To = true, from, to
	c.RollbackReloads = RunReloads(ctx, b, log)
	c.RollbackAt = p.now()
	if err := paidOwed(b, to.Name, true, true); err != nil {
		c.OwedErr = err
	}
}

// settleServed runs the served check after a change's reload (see
// Pipeline.served) and, when the daemon still serves another leaf and the
// bundle says served_mismatch = "rollback", refuses the new leaf and rolls
// back, then looks once more at what the daemon serves.
func (p *Pipeline) settleServed(ctx context.Context, c *Change, reloaded bool) {
	b := p.B
	if b.Served == "" || !reloaded {
		return
	}
	c.Served = p.served(ctx, c, true)
	if c.Served.Step != ServedRollBack {
		return
	}
	p.rollback(ctx, c, "its daemon did not serve it after its reloads and it was rolled back")
	if c.RolledBack {
		r := p.waitServed(ctx, b.ServedWait.Duration)
		c.ServedAfterRollback = &r
	}
}
